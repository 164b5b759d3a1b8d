"""One measured stop through the controller's API, as a client sees it: from the stop call to SUCCESSFUL.

The controller is started afresh (a new SQLite store) for every run; the clock starts at the stop call and
stops when a poll of the task list (every 5 ms) sees the task leave RUNNING. One authenticated request
goes before the clock starts: the first one after a start verifies the password (a KDF, ~0.1 s), which
a client pays once per controller, not per stop (`first_request_s` keeps its time). CPU is read per
process group around exactly that window, and py-spy (if asked) samples it. The benchmark's own polls
cost the controller CPU too, so after the stop the same poll is repeated POLL_PROBES times to price one,
and `controller_net` subtracts the polls made.
"""

from __future__ import annotations

import contextlib
import os
import time
import tomllib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from bench import stages
from bench.common import controller
from bench.cpu import Meter, tree_cpu
from bench.spy import py_spy

POLL_INTERVAL = 0.005
POLL_PROBES = 100
COMMAND_STAGES = ("Prepare stop observer", "Stop observer process")  # one agent command per subtask


@contextmanager
def _store(url: str) -> Iterator[None]:
    os.environ["OBSTOP_STORE__URL"] = url  # a declared key: every run on a fresh store
    try:
        yield
    finally:
        del os.environ["OBSTOP_STORE__URL"]


def _wait_idle(pids: list[int], window: float = 0.25, busy: float = 0.02, limit: float = 20.0) -> float:
    """Seconds until the processes (and children) are idle right after a burst of work (a watch round):
    idle (a window of `window` s under `busy` s of CPU), then busy again (the next round, within
    `limit`), then idle: the stop call comes as far from the next round as it can."""
    t0 = time.monotonic()

    def quiet() -> bool:
        before = sum(map(tree_cpu, pids))
        time.sleep(window)
        return sum(map(tree_cpu, pids)) - before < busy

    for wanted in (True, False, True):
        while time.monotonic() - t0 < limit and quiet() != wanted:
            pass
    return time.monotonic() - t0


def stop_via_controller(
    config: Path,
    work: Path,
    label: str,
    groups: Mapping[str, list[int]],
    profile: dict[str, Path] | None = None,
    idle_first: bool = False,
) -> dict[str, Any]:
    """Start a controller on config, stop cluster 1 (freeze off), return time, CPU and the stage timeline.

    groups: other processes whose CPU to count (e.g. "agents", "mosquitto", "sshd"). profile: py-spy
    output per process, "controller" and/or a pid given as its decimal string. idle_first: before the
    stop call, wait until the controller is idle just after a round of its watch (an agentless one has
    connected to its hosts and probes them every probe_interval; a stop call meeting a round shares
    the hosts with it): `idle_s` says how long that took.
    """
    cfg = tomllib.loads(config.read_text())
    port = int(cfg["api"]["listen"].rsplit(":", 1)[1])
    password = (work / "admin.password").read_text().strip()
    (work / "state").mkdir(exist_ok=True)
    with (
        _store(f"sqlite:///{work}/state/{label}.db"),
        controller(config, work / f"{label}.log", port) as proc,
        httpx.Client(base_url=f"http://127.0.0.1:{port}", auth=("admin", password), timeout=120) as http,
        contextlib.ExitStack() as spies,
    ):
        # the first authenticated request pays the password KDF (once per controller life): not the stop's
        t0 = time.monotonic()
        http.get("/api/v2/tasks/instances?clusterId=1").raise_for_status()
        first_request = time.monotonic() - t0
        idle = _wait_idle([proc.pid, *(p for g in groups.values() for p in g)]) if idle_first else None
        for who, path in (profile or {}).items():
            spies.enter_context(py_spy(proc.pid if who == "controller" else int(who), path))
        meter = Meter({"controller": [proc.pid], **groups})
        t0 = time.monotonic()
        r = http.post("/api/v2/ob/clusters/1/stop", json={"freeze": False})
        answer = time.monotonic() - t0
        if r.status_code != 200:
            raise RuntimeError(f"stop call refused: {r.status_code} {r.text}")
        task_id = r.json()["data"]["id"]
        polls = 0
        while True:
            polls += 1
            listed = http.get("/api/v2/tasks/instances?clusterId=1").json()["data"]["contents"][0]
            if listed["status"] != "RUNNING":
                break
            time.sleep(POLL_INTERVAL)
        took = time.monotonic() - t0
        cpu = meter.delta()
        spies.close()
        before = tree_cpu(proc.pid)
        for _ in range(POLL_PROBES):
            http.get("/api/v2/tasks/instances?clusterId=1")
        per_poll = (tree_cpu(proc.pid) - before) / POLL_PROBES
        task = http.get(f"/api/v2/tasks/instances/{task_id}").json()["data"]
    commands = sum(1 for s in task["tasks"] if s["name"] in COMMAND_STAGES)
    cpu["controller_net"] = round(max(cpu["controller"] - polls * per_poll, 0.0), 4)
    out: dict[str, Any] = {
        "seconds": took,
        "answer_s": round(answer, 4),
        "first_request_s": round(first_request, 4),
        **({"idle_s": round(idle, 3)} if idle is not None else {}),
        "status": task["status"],
        "failed": sum(1 for s in task["tasks"] if s["status"] == "FAILED"),
        "unreachable": 0,
        "cpu_s": cpu,
        "polls": polls,
        "poll_cpu_ms": round(1000 * per_poll, 3),
        "commands": commands,
        "timeline": stages.timeline(task) if task["status"] == "SUCCESSFUL" else None,
    }
    if "mqtt" in cfg and "agents" in cpu and commands:
        out["agent_cpu_ms_per_command"] = round(1000 * cpu["agents"] / commands, 2)
    return out
