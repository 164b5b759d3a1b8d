"""Controller scale: a stop of 100 / 1,000 / 5,000 servers answered by a simulated agent swarm.

Measures, per store (SQLite, PostgreSQL) and size: the first stop call after the controller's start, on
the big cluster (the controller warms up at start: issue 12 asks this call for <= 100 ms at 1,000; it is
made once the controller's start-up work is done, see `--no-settle`), then
end-to-end time (call to SUCCESSFUL), time per server, CPU seconds of the controller, the swarm,
Mosquitto and the client (and the controller's per server), the controller's peak RSS, the store's size,
and the stage timeline.
`--profile DIR` samples the controller with py-spy (DIR/STORE-N.txt; `python -m bench.profsum FILE`).
`--freeze` stops with the minor freeze on, against a fake cluster's SQL (bench/clustersql.py: one process
answering for the cluster; checkpoints advance `--freeze-delay` after the freeze); `python -m bench.freeze`
runs the same stop with the freeze off and on, side by side.

    python -m bench.scale --servers 100 1000 5000 --stores sqlite postgres --out bench/results/scale.json
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import psutil
import tomli_w

from bench import stages
from bench.clustersql import cluster_sql, record
from bench.common import RssSampler, controller, mosquitto
from bench.cpu import Meter
from bench.spy import py_spy
from obstop.agent import signing
from obstop.controller.auth import hash_password
from obstop.fakes.net import free_port

PG_ADMIN = "postgres://postgres@127.0.0.1:5432/test"


def server_ip(i: int) -> str:
    """A loopback address: the fake cluster's SQL answers at each (bench/clustersql.py)."""
    return f"127.77.{i // 256 % 256}.{i % 256}"


def inventory(n: int, sql_port: int = 2881) -> dict[str, Any]:
    """Cluster 1: n servers in 3 zones (the one stopped). Cluster 2: one server, left alone."""
    servers = [
        {
            "id": i,
            "zone": f"zone{(i - 1) % 3 + 1}",
            "host": f"h{i}",
            "ip": server_ip(i),
            "sql_port": sql_port,
            "home_path": "/home/admin/oceanbase",
        }
        for i in range(1, n + 1)
    ]
    warmup = [
        {
            "id": n + 1,
            "zone": "zone1",
            "host": f"h{n + 1}",
            "ip": "10.255.255.254",
            "home_path": "/home/admin/oceanbase",
        }
    ]
    return {
        "clusters": [
            {"id": 1, "name": "bench", "ob_cluster_id": 1, "servers": servers},
            {"id": 2, "name": "warmup", "ob_cluster_id": 2, "servers": warmup},
        ]
    }


async def _pg(sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(PG_ADMIN)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def _pg_size(name: str) -> int:
    import asyncpg

    conn = await asyncpg.connect(PG_ADMIN)
    try:
        return int(await conn.fetchval("SELECT pg_database_size($1)", name))
    finally:
        await conn.close()


def _settle(pid: int, quiet: float = 0.1, window: float = 0.3, bound: float = 30.0) -> float:
    """Until the controller's start-up work is done (the agents' presence taken in, each told what to
    watch, their first reports reconciled): its CPU below `quiet` of a core over `window`. Seconds waited."""
    began = time.monotonic()
    proc = psutil.Process(pid)
    while time.monotonic() - began < bound:
        before = sum(proc.cpu_times()[:2])
        time.sleep(window)
        if sum(proc.cpu_times()[:2]) - before < quiet * window:
            break
    return time.monotonic() - began


def run_one(
    n: int,
    store: str,
    delay: float,
    work: Path,
    profile: Path | None = None,
    settle: bool = True,
    freeze: bool = False,
    freeze_delay: float = 0.2,
) -> dict[str, Any]:
    """One stop of n servers; with freeze, against the fake cluster's SQL."""
    work.mkdir(parents=True)
    sql_port = free_port(server_ip(1))
    signing.generate(work / "keys")
    # the swarm signs every agent's events with one key: each agent's .pub is a copy of it
    signing.generate(work / "keys", agent="swarm")
    (work / "keys" / "agents").mkdir()
    for i in range(1, n + 2):
        shutil.copyfile(work / "keys" / "swarm.pub", work / "keys" / "agents" / f"h{i}.pub")
    (work / "inventory.toml").write_text(tomli_w.dumps(inventory(n, sql_port)))
    port = free_port()
    db_name = f"obstop_bench_{n}_{int(time.time())}"
    url = (
        f"sqlite:///{work}/controller.db"
        if store == "sqlite"
        else f"postgresql://postgres@127.0.0.1:5432/{db_name}"
    )
    if store == "postgres":
        asyncio.run(_pg(f'CREATE DATABASE "{db_name}"'))
    with contextlib.ExitStack() as sql_stack, mosquitto(work / "mqtt") as broker:
        sql = None
        if freeze:
            sql = sql_stack.enter_context(cluster_sql(work, work / "inventory.toml", freeze_delay))
        (work / "controller.toml").write_text(
            tomli_w.dumps(
                {
                    "inventory": "inventory.toml",
                    "log_level": os.environ.get("BENCH_LOG_LEVEL", "WARNING"),
                    "api": {
                        "listen": f"127.0.0.1:{port}",
                        "users": [
                            {
                                "name": "admin",
                                "password_hash": hash_password("b", 1000),
                                "roles": ["CLUSTER_MANAGER", "TASK_VIEWER"],
                            }
                        ],
                    },
                    "store": {"url": url},
                    "mqtt": {"url": broker.url},
                    "signing": {
                        "private_key": "keys/command-signing.key",
                        "agent_keys_dir": "keys/agents",
                        "command_ttl_seconds": 3600,
                    },
                    "stop": {"subtask_timeout": 1200, "resend_interval": 30},
                    "engine": {"max_concurrency": 1024},
                    "cluster_sql": [sql.config()] if sql is not None else [],
                }
            )
        )
        swarm = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bench.swarm",
                "--broker",
                broker.url,
                "--public-key",
                str(work / "keys" / signing.PUBLIC_NAME),
                "--agent-key",
                str(work / "keys" / "swarm.key"),
                "--delay",
                str(delay),
                "--hosts",
                str(n),
            ]
        )
        try:
            with (
                controller(work / "controller.toml", work / "controller.log", port) as proc,
                RssSampler(proc.pid) as rss,
                contextlib.ExitStack() as spies,
                httpx.Client(base_url=f"http://127.0.0.1:{port}", auth=("admin", "b"), timeout=120) as http,
            ):
                if profile is not None:  # py-spy samples the controller for the whole stop
                    spies.enter_context(py_spy(proc.pid, profile / f"{store}-{n}.txt"))
                # the first authenticated request pays the password KDF (once per controller life)
                http.get("/api/v2/tasks/instances?clusterId=1").raise_for_status()
                settled = _settle(proc.pid) if settle else 0.0
                groups = {"controller": [proc.pid], "swarm": [swarm.pid], "mosquitto": [broker.pid]}
                if sql is not None:
                    groups["cluster_sql"] = [sql.pid]
                meter = Meter(groups)
                t0 = time.monotonic()
                r = http.post("/api/v2/ob/clusters/1/stop", json={"freeze": freeze})
                answered = first_call = time.monotonic() - t0  # the first stop call after the start
                assert r.status_code == 200, r.text
                task_id = r.json()["data"]["id"]
                status, polls = "RUNNING", 0
                while status == "RUNNING":
                    polls += 1
                    # as an operator's watch would: each poll renders the whole task (15,000 subtasks at
                    # 5,000 servers, ~25 ms of the controller's CPU), so the polls back off, at most
                    # 5 % of the time so far late (0.1 s at 10 s in), never more than 0.5 s
                    time.sleep(min(0.5, 0.02 + (time.monotonic() - t0) / 20))
                    status = http.get("/api/v2/tasks/instances?clusterId=1").json()["data"]["contents"][0][
                        "status"
                    ]
                total = time.monotonic() - t0
                cpu = meter.delta()
                assert status == "SUCCESSFUL", status
                final = http.get(f"/api/v2/tasks/instances/{task_id}").json()["data"]
                timeline = stages.timeline(final)
                seen = record(sql.directory) if sql is not None else None
        finally:
            swarm.terminate()
            swarm.wait(10)
    size = (
        (work / "controller.db").stat().st_size + sum(p.stat().st_size for p in work.glob("controller.db-*"))
        if store == "sqlite"
        else asyncio.run(_pg_size(db_name))
    )
    if os.environ.get("BENCH_LOG_LEVEL"):
        shutil.copy(work / "controller.log", f"/tmp/obstop-bench-{store}-{n}.log")
    if store == "postgres":
        asyncio.run(_pg(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)'))
    return {
        "servers": n,
        "store": store,
        "freeze": freeze,
        "freeze_delay_s": freeze_delay if freeze else None,
        "cluster_sql": seen,
        "load_avg_1m": os.getloadavg()[0],
        "delay_s": delay,
        "answer_ms": answered * 1000,
        "first_call_after_start_ms": first_call * 1000,
        "settled_before_first_call_s": settled,
        "total_s": total,
        "polls": polls,
        "per_server_ms": total * 1000 / n,
        "peak_rss_mb": rss.peak / 2**20,
        "store_mb": size / 2**20,
        "cpu_s": cpu,
        "controller_cpu_ms_per_server": round(1000 * cpu["controller"] / n, 3),
        "stages": timeline,
    }


def main() -> None:
    p = argparse.ArgumentParser(description="controller scale benchmark")
    p.add_argument("--servers", type=int, nargs="+", default=[100, 1000, 5000])
    p.add_argument("--stores", nargs="+", default=["sqlite", "postgres"], choices=["sqlite", "postgres"])
    p.add_argument("--delay", type=float, default=0.05, help="each simulated command's duration")
    p.add_argument("--out", type=Path, default=Path("bench/results/scale.json"))
    p.add_argument("--profile", type=Path, default=None, help="write py-spy collapsed stacks here")
    p.add_argument(
        "--no-settle",
        action="store_true",
        help="call stop as soon as the API answers, while the start-up work (agents' presence, their "
        "watches) still runs; by default the first call waits until the controller is quiet",
    )
    p.add_argument("--freeze", action="store_true", help="the minor freeze on, against a fake cluster SQL")
    p.add_argument("--freeze-delay", type=float, default=0.2, help="seconds from a freeze to its checkpoint")
    a = p.parse_args()
    results = []
    with tempfile.TemporaryDirectory(prefix="obstop-bench-") as tmp:
        for store in a.stores:
            for n in a.servers:
                work = Path(tmp) / f"{store}-{n}"
                res = run_one(n, store, a.delay, work, a.profile, not a.no_settle, a.freeze, a.freeze_delay)
                print(
                    json.dumps(
                        {
                            k: round(v, 3) if isinstance(v, float) else v
                            for k, v in res.items()
                            if k != "stages"
                        }
                    ),
                    flush=True,
                )
                print(stages.render(res["stages"], res["answer_ms"] / 1000), flush=True)
                results.append(res)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
