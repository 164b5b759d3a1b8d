"""The controller as a real process, killed with SIGKILL in the middle of a start and of a rollback, then
started again: it finishes the task, and no observer is launched twice (the launch is journalled before
it happens, and a resumed command keeps its id). Agentless, and a start through agents over MQTT."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from obstop.fakes import hosts as fakehosts
from obstop.fakes.net import free_port
from tests.support.controller import amend_config, write_config
from tests.support.controller_process import ControllerProcess
from tests.support.fakes import Fakes, fresh_block, start_cluster
from tests.support.lifecycle import persist_args, starts
from tests.support.mosquitto import Mosquitto
from tests.support.processes import alive, kill_tree_under, until


class Controller(ControllerProcess):
    def log_of(self, task_id: int, name: str) -> str:
        return "\n".join(self.logs(task_id, name))


def launched_all(ctl: Controller, task_id: int, homes: list[Path], before: list[int]) -> bool:
    """Every process subtask runs, and every observer has been launched (it is still starting)."""
    subs = [
        s
        for s in ctl.task(task_id)["tasks"]
        if s["name"] in ("Start observer process", "Stop observer process")
    ]
    running = [s for s in subs if s["status"] == "RUNNING"]
    return len(running) == len(homes) and [starts(h) for h in homes] == [b + 1 for b in before]


def test_sigkill_during_a_start_and_restart_launches_each_observer_once(tmp_path: Path, fakes: Fakes) -> None:
    cluster = start_cluster(fakes, zones=2, per_zone=1)
    port = free_port()
    config = write_config(
        tmp_path,
        cluster,
        f"sqlite:///{tmp_path}/c.db",
        api={"listen": f"127.0.0.1:{port}"},
        engine={"lease_seconds": 5},
    )
    ctl = Controller(config, tmp_path / "controller.log")
    ctl.start()
    try:
        assert ctl.finish(ctl.run_task("/api/v2/ob/clusters/1/stop")) == "SUCCESSFUL"
        homes = [f.home for f in cluster.fakes]
        for h in homes:
            persist_args(h, "--start-delay", "3")  # a slow restart, as a real observer replaying its log
        task_id = ctl.run_task("/api/v2/ob/clusters/1/start")
        until(lambda: launched_all(ctl, task_id, homes, [1, 1]), "the observers were never launched")
        ctl.kill()
        ctl.start()
        assert ctl.finish(task_id) == "SUCCESSFUL"
        assert [starts(h) for h in homes] == [2, 2]
        assert all(alive(f.pid() or 0) for f in cluster.fakes)
        assert ctl.log_of(task_id, "Start observer process").count("launched by an earlier attempt") == 2
    finally:
        ctl.stop()


def test_sigkill_during_a_rollback_and_restart_starts_each_observer_once(
    tmp_path: Path, fakes: Fakes
) -> None:
    cluster = start_cluster(fakes, zones=3, per_zone=1, misbehave={1: ["--linger-child", "60"]})
    port = free_port()
    config = write_config(
        tmp_path,
        cluster,
        f"sqlite:///{tmp_path}/c.db",
        api={"listen": f"127.0.0.1:{port}"},
        engine={"lease_seconds": 5},
        stop={"port_timeout": 0.5},
    )
    ctl = Controller(config, tmp_path / "controller.log")
    ctl.start()
    try:
        task_id = ctl.run_task("/api/v2/ob/clusters/1/stop")
        assert ctl.finish(task_id) == "FAILED"
        homes = [f.home for f in cluster.fakes]
        kill_tree_under(homes[1])  # the cause of the failure goes
        bad = homes[1] / "etc" / "observer.config.bin"
        bad.write_text(bad.read_text().replace(', "--linger-child", "60"', ""))
        for h in homes:
            persist_args(h, "--start-delay", "3")
        r = ctl.http.post(f"/api/v2/tasks/instances/{task_id}/rollback")
        assert r.status_code == 200, r.text
        until(lambda: launched_all(ctl, task_id, homes, [1, 1, 1]), "the rollback never launched them")
        ctl.kill()
        ctl.start()
        assert ctl.finish(task_id) == "SUCCESSFUL"
        assert [starts(h) for h in homes] == [2, 2, 2]
        assert all(alive(f.pid() or 0) for f in cluster.fakes)
        cluster_now = ctl.http.get("/api/v2/ob/clusters/1").json()["data"]
        assert cluster_now["status"] == "RUNNING"
    finally:
        ctl.stop()


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    m = Mosquitto(tmp_path / "mosquitto").start()
    yield m
    m.stop()


@pytest.mark.mqtt
def test_sigkill_during_a_start_through_agents(tmp_path: Path, broker: Mosquitto) -> None:
    d = tmp_path / "fleet"
    fleet = fakehosts.up(d, zones=2, servers_per_zone=1, broker=broker.url, first_ip=fresh_block(2))
    try:
        config = amend_config(
            d / "controller.toml", stop={"resend_interval": 0.5}, engine={"lease_seconds": 5}
        )
        ctl = Controller(config, tmp_path / "controller.log")
        ctl.start()
        try:
            assert ctl.finish(ctl.run_task("/api/v2/ob/clusters/1/stop")) == "SUCCESSFUL"
            homes = [Path(h.home) for h in fleet.hosts]
            for h in homes:
                persist_args(h, "--start-delay", "3")
            task_id = ctl.run_task("/api/v2/ob/clusters/1/start")
            until(lambda: launched_all(ctl, task_id, homes, [1, 1]), "the agents never launched them")
            ctl.kill()
            ctl.start()
            assert ctl.finish(task_id) == "SUCCESSFUL"
            assert [starts(h) for h in homes] == [2, 2]
            for h in fleet.hosts:
                text = (d / "hosts" / h.host / "agent.log").read_text()
                assert "rejected command" not in text
        finally:
            ctl.stop()
    finally:
        asyncio.run(asyncio.to_thread(fakehosts.down, d))
