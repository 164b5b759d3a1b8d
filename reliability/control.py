"""The controller as a process and its HTTP API, as the admin user of the trial's world."""

from __future__ import annotations

import re
import signal
import subprocess
import time
import tomllib
from pathlib import Path
from typing import Any

import httpx

from reliability.procs import TrialError, child_env, obstop, until

# systemd's Restart=on-failure (deploy/systemd/*.service) restarts a daemon that exited non-zero or was
# killed by a signal other than these; a clean exit (0 or one of these signals) is left dead
RESTART_SEC = 2.0
CLEAN_SIGNALS = {signal.SIGHUP, signal.SIGINT, signal.SIGTERM, signal.SIGPIPE}


def restartable(returncode: int | None) -> bool:
    """Would systemd restart a daemon that ended so (None: still running)?"""
    if returncode is None:
        return True
    if returncode < 0:
        return signal.Signals(-returncode) not in CLEAN_SIGNALS
    return returncode != 0


class Controller:
    def __init__(self, config: Path, log: Path) -> None:
        self.config, self.log = config, log
        raw = tomllib.loads(config.read_text())
        self.url = f"http://{raw['api']['listen']}"
        password = (config.parent / "admin.password").read_text().strip()
        self.http = httpx.Client(base_url=self.url, auth=("admin", password), timeout=30)
        self.proc: subprocess.Popen[bytes] | None = None
        self.restarts = 0  # by the systemd stand-in (supervise), not by a scenario
        self.exits: list[int] = []  # the exit statuses it restarted after
        self._spawned = 0.0

    def spawn(self) -> None:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                obstop("controller", "--config", str(self.config)),
                stdout=out,
                stderr=out,
                env=child_env(),
                cwd=self.config.parent,
            )
        self._spawned = time.monotonic()

    def start(self) -> None:
        self.spawn()
        until(self._up, "the controller did not come up", 60)

    def _up(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise TrialError(f"controller exited {self.proc.returncode} while starting (see {self.log})")
        try:
            return self.http.get("/api/status").status_code == 200
        except httpx.TransportError:
            return False

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def supervise(self) -> None:
        """What systemd does for obstop-controller.service: an exit it would restart is restarted,
        RestartSec=2 after the last start."""
        proc = self.proc
        dead = proc is not None and proc.poll() is not None and restartable(proc.returncode)
        if dead and time.monotonic() - self._spawned >= RESTART_SEC:
            assert proc is not None and proc.returncode is not None
            self.restarts += 1
            self.exits.append(proc.returncode)
            self.spawn()

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.http.close()

    def _get(self, path: str) -> Any:
        r = self.http.get(path)
        if r.status_code != 200:
            raise TrialError(f"GET {path}: {r.status_code} {r.text[:300]}")
        return r.json()["data"]

    def post(self, path: str, body: dict[str, Any] | None = None) -> httpx.Response:
        return self.http.post(path, json=body)

    def stop_cluster(self, body: dict[str, Any] | None = None) -> int:
        r = self.post("/api/v2/ob/clusters/1/stop", body)
        if r.status_code != 200:
            raise TrialError(f"the stop was refused: {r.status_code} {r.text[:300]}")
        return int(r.json()["data"]["id"])

    def retry(self, task_id: int) -> None:
        r = self.post(f"/api/v2/tasks/instances/{task_id}/retry")
        if r.status_code != 200:
            raise TrialError(f"the retry was refused: {r.status_code} {r.text[:300]}")

    def task(self, task_id: int) -> dict[str, Any]:
        data: dict[str, Any] = self._get(f"/api/v2/tasks/instances/{task_id}")
        return data

    def tasks(self) -> list[dict[str, Any]]:
        data: list[dict[str, Any]] = self._get("/api/v2/tasks/instances?size=2000")["contents"]
        return data

    def cluster(self) -> dict[str, Any]:
        data: dict[str, Any] = self._get("/api/v2/ob/clusters/1")
        return data

    def log_of(self, task_id: int, subtask_id: int) -> str:
        return str(self._get(f"/api/v2/tasks/instances/{task_id}/subtasks/{subtask_id}/log")["log"])

    def failed_logs(self, task_id: int) -> str:
        task = self.task(task_id)
        return "\n".join(self.log_of(task_id, s["id"]) for s in task["tasks"] if s["status"] == "FAILED")

    def agents_up(self) -> set[str]:
        """Agents whose presence the controller sees online (its obstop_agent_up gauge)."""
        try:
            text = self.http.get("/metrics").text
        except httpx.TransportError:
            return set()
        return set(re.findall(r'^obstop_agent_up\{agent="([^"]+)"\} 1\.0$', text, re.M))
