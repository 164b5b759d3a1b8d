"""Driving one trial's task to its end while watching it: every poll is a sample the invariants read
(a subtask RUNNING past its timeout, a SUCCESSFUL subtask that stopped being so)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx

from reliability.procs import TrialError
from reliability.world import World

GRACE = 5.0  # seconds a subtask may overrun its timeout before it counts (the engine's poll, a restart)
FINISHED = ("SUCCESSFUL", "FAILED")


@dataclass
class Outcome:
    """How a trial ended: completed, failed clearly, retried through, or unexpected (with why)."""

    kind: str
    detail: str = ""


@dataclass
class Trial:
    world: World
    tasks: list[int] = field(default_factory=list)
    successful: dict[tuple[int, int], str] = field(default_factory=dict)
    violations: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    fault_at: float | None = None  # seconds after the stop call
    ended: dict[tuple[int, int, int], float] = field(default_factory=dict)  # (task, subtask, run): first seen
    _seen: set[tuple[object, ...]] = field(default_factory=set)

    def stop(self, body: dict[str, Any] | None = None) -> int:
        task_id = self.world.ctl.stop_cluster(body if body is not None else {"freeze": True})
        self.tasks.append(task_id)
        return task_id

    def sample(self, task_id: int) -> dict[str, Any] | None:
        """One look at the task (None while the controller does not answer)."""
        try:
            task = self.world.ctl.task(task_id)
        except (httpx.TransportError, TrialError):
            return None
        now = datetime.now(UTC)
        for s in task["tasks"]:
            key = (task_id, int(s["id"]))
            if s["status"] in FINISHED:
                self.ended.setdefault((task_id, int(s["id"]), int(s["runTime"])), time.time())
            if s["status"] == "SUCCESSFUL":
                self.successful[key] = s["name"]
            elif key in self.successful and s["operation"] != "ROLLBACK":
                self._violate(
                    ("lost", *key),
                    f"finished state lost: subtask {key[1]} ({s['name']}) SUCCESSFUL, now {s['status']}",
                )
            if s["status"] == "RUNNING" and s.get("startTime"):
                ran = (now - datetime.fromisoformat(s["startTime"])).total_seconds()
                if ran > float(s["timeout"]) + GRACE:
                    self._violate(
                        ("overdue", *key),
                        f"subtask {s['id']} ({s['name']}) RUNNING {ran:.0f}s, past its timeout "
                        f"{s['timeout']}s",
                    )
        return task

    def _violate(self, key: tuple[object, ...], what: str) -> None:
        """Counted once per subtask and kind, however many polls see it."""
        if key not in self._seen:
            self._seen.add(key)
            self.violations.append(what)

    def finish(self, task_id: int, timeout: float) -> str:
        """Poll until the task ends (restarting a controller as systemd would); its status, or RUNNING if
        it never ended (the invariants count that as a lost task)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.world.ctl.supervise()
            task = self.sample(task_id)
            if task is not None and task["status"] in FINISHED:
                return str(task["status"])
            time.sleep(0.1)
        return "RUNNING"

    def sleep(self, seconds: float, task_id: int) -> None:
        """Wait, sampling the task meanwhile."""
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            self.sample(task_id)
            time.sleep(min(0.1, left))

    def retry_through(self, task_id: int, timeout: float) -> Outcome:
        """After a clear failure: retry, and the task must complete."""
        self.world.ctl.retry(task_id)
        status = self.finish(task_id, timeout)
        if status == "SUCCESSFUL":
            return Outcome("retried through")
        why = self.world.ctl.failed_logs(task_id)[-400:] if status == "FAILED" else "still RUNNING"
        return Outcome("unexpected", f"retry ended {status}: {why}")
