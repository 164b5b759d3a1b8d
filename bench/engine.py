"""Orchestration alone: the controller's engine, group-commit writer, store and stop steps in one process,
on a fresh SQLite (or PostgreSQL) store, with agents that answer every probe and stop at once.

What a stop costs the controller besides the network and the agents: per size, the wall time from the
task's creation to SUCCESSFUL, the process's CPU (every thread: the database's too), the SQL statements and
transactions per stop, and the stage timeline (gaps between stages are the engine's and the store's).

    python -m bench.engine --servers 1 30 1000 5000 [--runs 5] [--store-url postgresql://...]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from bench import stages
from bench.scale import inventory
from obstop.agent.protocol import ObserverState, ObserverTarget, ProbeReport, StopOptions, StopReport
from obstop.controller import views
from obstop.controller.config import ControllerConfig
from obstop.controller.dispatch import Log, Router, WatchPlan
from obstop.controller.engine.runner import Engine
from obstop.controller.engine.service import Creator, Service
from obstop.controller.inventory import Inventory
from obstop.controller.steps.freeze import SQLPreparation
from obstop.controller.steps.lifecycle import Steps
from obstop.controller.store import Store
from obstop.controller.store.models import Cluster, Server, Zone


class AtOnce:
    """A dispatcher whose agents answer at once: the observer runs, then it is stopped."""

    def serves(self, host: str) -> bool:
        return True

    async def run(self, stopping: asyncio.Event) -> None:
        await stopping.wait()

    async def probe(self, command_id: str, target: ObserverTarget, log: Log, deadline: float) -> ProbeReport:
        return ProbeReport(host=target.host, home_path=target.home_path, state=ObserverState.RUNNING, pid=42)

    async def stop(
        self, command_id: str, target: ObserverTarget, options: StopOptions, log: Log, deadline: float
    ) -> StopReport:
        gone = ProbeReport(host=target.host, home_path=target.home_path, state=ObserverState.STOPPED)
        return StopReport(
            host=target.host, home_path=target.home_path, ok=True, pid=42, signals=["SIGTERM"], probe=gone
        )

    def watch(self, plan: WatchPlan) -> None:
        return None

    def refresh(self, hosts: Any) -> None:
        return None

    async def close(self) -> None:
        return None


async def measure(n: int, runs: int, url: str) -> dict[str, Any]:
    store = await Store.open(url)
    await store.clusters.sync(Inventory.model_validate(inventory(n)))
    config = ControllerConfig.model_validate({"store": {"url": url}, "engine": {"max_concurrency": 1024}})
    steps = Steps(Router(AtOnce()), config.stop, config.start, SQLPreparation([]), [])  # type: ignore[arg-type]
    engine = Engine(store, steps.run, canceller=steps.cancel, owner="bench", max_concurrency=1024)
    service = Service(config, store, engine)
    statements: Counter[str] = Counter()
    began = [0]

    def on_statement(*args: Any) -> None:
        statements[" ".join(str(args[2]).split())[:60]] += 1

    def on_begin(*args: Any) -> None:
        began[0] += 1

    sa.event.listen(store.db.engine.sync_engine, "before_cursor_execute", on_statement)
    sa.event.listen(store.db.engine.sync_engine, "begin", on_begin)
    stopping = asyncio.Event()
    running = asyncio.create_task(engine.run(stopping))
    await engine.started.wait()
    walls: list[float] = []
    cpus: list[float] = []
    stmts: list[int] = []
    txs: list[int] = []
    timeline: dict[str, Any] = {}
    try:
        for _ in range(runs):
            async with store.db.tx() as s:  # everything RUNNING again
                for model in (Cluster, Zone, Server):
                    await s.execute(sa.update(model).values(status="RUNNING"))
            statements.clear()
            began[0] = 0
            cpu, wall = time.process_time(), time.perf_counter()
            prepared = await service.prepare_stop_cluster(1, freeze=False)
            created = await service.create(prepared, Creator(1, "bench"))
            status = await engine.wait_task(created.task.id, timeout=600)
            walls.append(time.perf_counter() - wall)
            cpus.append(time.process_time() - cpu)
            stmts.append(sum(statements.values()))
            txs.append(began[0])
            assert status == "SUCCESSFUL", status
            task, cluster, subtasks = await service.task(created.task.id)
            timeline = stages.timeline(views.task_view(task, cluster, subtasks))
    finally:
        stopping.set()
        await running
        await store.close()
    return {
        "servers": n,
        "wall_s": statistics.median(walls),
        "cpu_s": statistics.median(cpus),
        "statements_per_stop": statistics.median(stmts),
        "transactions_per_stop": statistics.median(txs),
        "stages": timeline,
    }


def main() -> None:
    p = argparse.ArgumentParser(description="the engine, writer and store alone, agents answering at once")
    p.add_argument("--servers", type=int, nargs="+", default=[1, 30, 1000])
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--store-url", default=None, help="default: a fresh SQLite file per size")
    p.add_argument("--out", type=Path, default=Path("bench/results/engine.json"))
    a = p.parse_args()
    results = []
    with tempfile.TemporaryDirectory(prefix="obstop-bench-engine-") as tmp:
        for n in a.servers:
            url = a.store_url or f"sqlite:///{tmp}/engine-{n}.db"
            res = asyncio.run(measure(n, a.runs if n <= 1000 else 1, url))
            print(
                json.dumps(
                    {k: round(v, 4) if isinstance(v, float) else v for k, v in res.items() if k != "stages"}
                )
            )
            print(stages.render(res["stages"], 0.0), flush=True)
            results.append(res)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
