"""The controller as a real process (`python -m obstop controller`), seen through its HTTP API."""

from __future__ import annotations

import os
import signal
import ssl
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import httpx

from tests.support.controller import ADMIN
from tests.support.processes import obstop_argv, until


def api_port(config: Path) -> int:
    """The port of [api] listen in a controller.toml."""
    return int(tomllib.loads(config.read_text())["api"]["listen"].rsplit(":", 1)[1])


class ControllerProcess:
    """Start, SIGKILL, restart and SIGTERM a controller; read its tasks as the admin user."""

    def __init__(
        self, config: Path, log: Path, env: dict[str, str] | None = None, ca_file: Path | None = None
    ) -> None:
        """ca_file: the controller serves https ([api] tls_cert), verified against this CA."""
        self.config, self.log = config, log
        self.port = api_port(config)
        self.env = {**os.environ, "OBSTOP_LOG_LEVEL": "INFO", **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = f"{'https' if ca_file else 'http'}://127.0.0.1:{self.port}"
        verify: ssl.SSLContext | bool = ssl.create_default_context(cafile=str(ca_file)) if ca_file else True
        self.http = httpx.Client(base_url=self.url, headers=ADMIN, timeout=10, verify=verify)

    def start(self) -> None:
        """Start it and return once /api/status answers (fails at once if the process exits)."""
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                obstop_argv("controller", "--config", str(self.config)), stdout=out, stderr=out, env=self.env
            )
        until(self._up, "the controller did not come up", timeout=60)

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
        """SIGTERM; its exit status."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(30)

    def close(self) -> None:
        """Teardown: whatever state it is in, no process is left."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.http.close()

    def task(self, task_id: int) -> dict[str, Any]:
        r = self.http.get(f"/api/v2/tasks/instances/{task_id}")
        assert r.status_code == 200, r.text
        data: dict[str, Any] = r.json()["data"]
        return data

    def logs(self, task_id: int, name: str) -> list[str]:
        """The logs of the task's subtasks called name."""
        return [
            self.http.get(f"/api/v2/tasks/instances/{task_id}/subtasks/{s['id']}/log").json()["data"]["log"]
            for s in self.task(task_id)["tasks"]
            if s["name"] == name
        ]

    def stop_cluster(self, cluster_id: int = 1, body: dict[str, Any] | None = None) -> int:
        """POST the stop; the new task's id."""
        return self.run_task(f"/api/v2/ob/clusters/{cluster_id}/stop", body)

    def run_task(self, path: str, body: dict[str, Any] | None = None) -> int:
        """POST an operation that answers a task (stop, start, rollback...); the task's id."""
        r = self.http.post(path, json=body)
        assert r.status_code == 200, r.text
        return int(r.json()["data"]["id"])

    def finish(self, task_id: int, timeout: float = 60) -> str:
        """Wait (bounded) until the task no longer runs; its status."""
        until(lambda: self.task(task_id)["status"] != "RUNNING", f"task {task_id} did not finish", timeout)
        return str(self.task(task_id)["status"])
