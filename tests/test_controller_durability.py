"""The controller as a real process, killed with SIGKILL in the middle of a stop and started again: it
finishes the task, and no observer is signalled twice or sent a second command with a new id."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from obstop.controller.store import Store
from tests.conftest import Fakes
from tests.ctl import ADMIN, database, start_cluster, write_config
from tests.support import alive, free_port


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    async with database(request.param, tmp_path) as url:
        yield url


class ControllerProcess:
    def __init__(self, config: Path, port: int, log: Path) -> None:
        self.config, self.port, self.log = config, port, log
        self.proc: subprocess.Popen[bytes] | None = None
        self.http = httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=ADMIN, timeout=10)

    def start(self) -> None:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                ["obstop", "controller", "--config", str(self.config)],
                stdout=out,
                stderr=out,
                env={**os.environ, "OBSTOP_LOG_LEVEL": "INFO"},
            )
        self.until(lambda: self._up(), "controller did not come up")

    def _up(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"controller exited {self.proc.returncode}: {self.log.read_text()[-2000:]}")
        try:
            return self.http.get("/api/status").status_code == 200
        except httpx.TransportError:
            return False

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(30)

    def task(self, task_id: int) -> dict[str, Any]:
        r = self.http.get(f"/api/v2/tasks/instances/{task_id}")
        assert r.status_code == 200, r.text
        data: dict[str, Any] = r.json()["data"]
        return data

    @staticmethod
    def until(cond: Callable[[], bool], what: str, timeout: float = 60) -> None:
        # the controller is another process: polling its API is how a user (and this test) sees it
        deadline = time.monotonic() + timeout
        while not cond():
            assert time.monotonic() < deadline, what
            time.sleep(0.02)


def signal_sent(ctl: ControllerProcess, task_id: int) -> bool:
    """Every observer has been sent SIGTERM and none has exited yet (they take 4 s)."""
    task = ctl.task(task_id)
    stops = [s for s in task["tasks"] if s["name"] == "Stop observer process"]
    if not all(s["status"] == "RUNNING" for s in stops):
        return False
    logs = [
        ctl.http.get(f"/api/v2/tasks/instances/{task_id}/subtasks/{s['id']}/log").json()["data"]["log"]
        for s in stops
    ]
    return all("sending SIGTERM" in text for text in logs)


def prepare_started(ctl: ControllerProcess, task_id: int) -> bool:
    task = ctl.task(task_id)
    return any(s["name"] == "Prepare stop observer" and s["status"] != "PENDING" for s in task["tasks"])


CRASH_POINTS: dict[str, Callable[[ControllerProcess, int], bool]] = {
    "right-after-the-stop-call": lambda ctl, task_id: True,
    "while-preparing-observers": prepare_started,
    "while-stopping-processes": signal_sent,
}


@pytest.mark.parametrize("crash_point", list(CRASH_POINTS))
async def test_sigkill_mid_stop_and_restart_finishes_once(
    tmp_path: Path, fakes: Fakes, store_url: str, crash_point: str
) -> None:
    cluster = start_cluster(
        fakes, zones=2, per_zone=2, misbehave={i: ["--exit-delay", "4"] for i in range(4)}
    )
    port = free_port()
    config = write_config(
        tmp_path,
        cluster,
        store_url,
        api={"listen": f"127.0.0.1:{port}"},
        engine={"lease_seconds": 5},
        stop={"term_timeout": 10},
    )
    ctl = ControllerProcess(config, port, tmp_path / "controller.log")
    ctl.start()
    r = ctl.http.post("/api/v2/ob/clusters/1/stop")
    assert r.status_code == 200, r.text
    task_id = r.json()["data"]["id"]

    ctl.until(lambda: CRASH_POINTS[crash_point](ctl, task_id), f"never reached {crash_point}")
    ctl.kill()
    ctl.start()
    ctl.until(lambda: ctl.task(task_id)["status"] != "RUNNING", "task did not finish after the restart")

    task = ctl.task(task_id)
    assert task["status"] == "SUCCESSFUL", task
    assert not any(alive(p) for p in cluster.pids)
    for fake in cluster.fakes:
        log = (fake.home / "log" / "observer.log").read_text()
        assert log.count("received SIGTERM") == 1, log
    if crash_point == "while-stopping-processes":  # the resumed stop found its mark and only waited
        stop_logs = [
            ctl.http.get(f"/api/v2/tasks/instances/{task_id}/subtasks/{s['id']}/log").json()["data"]["log"]
            for s in task["tasks"]
            if s["name"] == "Stop observer process"
        ]
        assert all("already sent to pid" in text for text in stop_logs), stop_logs
    assert ctl.stop() == 0  # SIGTERM: a clean exit

    store = await Store.open(store_url)
    try:
        stops = [s["id"] for s in task["tasks"] if s["name"] == "Stop observer process"]
        commands = await store.commands.of_subtasks(stops)
        assert sorted(c.subtask_id for c in commands) == sorted(stops)  # one command id per observer
        assert all(c.result is not None and c.result["ok"] for c in commands)
    finally:
        await store.close()
