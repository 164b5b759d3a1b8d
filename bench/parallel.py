"""Parallelism: a stop of N real fake observers through N agents over a real Mosquitto takes about as long
as one observer's own stop, not N of them.

For N in 1, 10, 30: the time from the stop API call to SUCCESSFUL (freeze off), several runs, each on a
fresh controller store with the fake observers started again; against the time the agent's procedure
takes to stop one observer alone.

    python -m bench.parallel --hosts 1 10 30 --runs 5 --out bench/results/parallel.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
import tomllib
from pathlib import Path
from typing import Any

import httpx

from bench.common import controller, mosquitto, summary
from bench.scale import stage_timeline
from obstop.agent import procedure
from obstop.agent.executors.local import LocalHost
from obstop.agent.protocol import ObserverTarget
from obstop.fakes import hosts as fakehosts
from obstop.fakes.install import FakeObserver, start
from obstop.fakes.net import free_block


def single_observer_stop(work: Path, runs: int) -> list[float]:
    """The agent's own procedure on one fake observer, by itself: the floor for any stop."""
    out = []
    ip = free_block(1)
    for i in range(runs):
        fake = FakeObserver(work / f"single{i}", ip)
        start(fake)
        t0 = time.monotonic()
        report = asyncio.run(
            procedure.stop(LocalHost("bench"), ObserverTarget(host="b", ip=ip, home_path=str(fake.home)))
        )
        out.append(time.monotonic() - t0)
        assert report.ok, report.reason
    return out


def split(n: int) -> tuple[int, int]:
    zones = 3 if n % 3 == 0 else (2 if n % 2 == 0 else 1)
    return zones, n // zones


def restart_observers(fleet: fakehosts.Fleet, directory: Path) -> None:
    """Start again every fake observer that is not running (after a stop)."""
    import psutil

    for h in fleet.hosts:
        try:
            if psutil.Process(h.observer_pid).status() != psutil.STATUS_ZOMBIE:
                continue
        except psutil.NoSuchProcess:
            pass
        fake = FakeObserver(Path(h.home), h.ip, zone=h.zone, cluster_dir=directory / "cluster")
        h.observer_pid = start(fake)
    fleet.save()


def run_n(n: int, runs: int, work: Path, broker: str) -> dict[str, Any]:
    d = work / f"fleet-{n}"
    zones, per_zone = split(n)
    fleet = fakehosts.up(d, zones=zones, servers_per_zone=per_zone, broker=broker, first_ip=free_block(n))
    cfg = tomllib.loads((d / "controller.toml").read_text())
    port = int(cfg["api"]["listen"].rsplit(":", 1)[1])
    password = (d / "admin.password").read_text().strip()
    times, server_side = [], []
    try:
        for run in range(runs):
            if run:
                restart_observers(fleet, d)
            os.environ["OBSTOP_STORE__URL"] = f"sqlite:///{d}/state/run{run}.db"  # a fresh store each run
            try:
                with controller(d / "controller.toml", d / f"controller-{run}.log", port):
                    http = httpx.Client(
                        base_url=f"http://127.0.0.1:{port}", auth=("admin", password), timeout=30
                    )
                    t0 = time.monotonic()
                    r = http.post("/api/v2/ob/clusters/1/stop", json={"freeze": False})
                    task_id = r.json()["data"]["id"]
                    while True:
                        status = http.get("/api/v2/tasks/instances?clusterId=1").json()["data"]["contents"][
                            0
                        ]["status"]
                        if status != "RUNNING":
                            break
                        time.sleep(0.005)
                    times.append(time.monotonic() - t0)
                    task = http.get(f"/api/v2/tasks/instances/{task_id}").json()["data"]
                    assert task["status"] == "SUCCESSFUL", task["status"]
                    from datetime import datetime

                    stages = stage_timeline(task)
                    server_side.append(
                        (
                            datetime.fromisoformat(task["finishTime"])
                            - datetime.fromisoformat(task["startTime"])
                        ).total_seconds()
                    )
            finally:
                del os.environ["OBSTOP_STORE__URL"]
    finally:
        fakehosts.down(d)
    return {
        "hosts": n,
        "stop_call_to_successful_s": summary(times),
        "server_side_s": summary(server_side),
        "last_run_stages": stages,
    }


def main() -> None:
    p = argparse.ArgumentParser(description="parallel stop benchmark")
    p.add_argument("--hosts", type=int, nargs="+", default=[1, 10, 30])
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--out", type=Path, default=Path("bench/results/parallel.json"))
    a = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="obstop-bench-par-") as tmp:
        work = Path(tmp)
        single = summary(single_observer_stop(work, a.runs))
        print(json.dumps({"single_observer_stop_s": single}), flush=True)
        results: dict[str, Any] = {"single_observer_stop_s": single, "runs": []}
        with mosquitto(work / "mqtt") as broker:
            for n in a.hosts:
                res = run_n(n, a.runs, work, broker)
                res["ratio_to_single"] = res["stop_call_to_successful_s"]["median"] / single["median"]
                print(json.dumps(res), flush=True)
                results["runs"].append(res)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
