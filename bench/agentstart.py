"""An agent's start and idle footprint: from `obstop agent` spawned to its presence online on the broker,
and its resident memory once idle (one fake host, its observer watched; no [[ssh]] hosts).

Each run stops the agent (SIGTERM: it publishes offline) and starts it again; the clock runs from the
spawn to the first retained `online` the broker hands a fresh subscriber after it. RSS is read after
`--idle` seconds online. CPU seconds of the agent's start are in every run.

    python -m bench.agentstart --runs 5 [--idle 2] [--out bench/results/agentstart.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiomqtt
import psutil

from bench.common import mosquitto, summary
from obstop.agent.protocol import Presence, presence_topic
from obstop.fakes import hosts as fakehosts
from obstop.fakes.net import free_block


async def _online_after(broker: str, topic: str, spawn: subprocess.Popen[bytes], timeout: float) -> float:
    host, port = broker.removeprefix("mqtt://").rsplit(":", 1)
    async with aiomqtt.Client(host, int(port), identifier=f"bench-agentstart-{os.getpid()}") as c:
        await c.subscribe(topic, qos=1)
        async with asyncio.timeout(timeout):
            async for m in c.messages:
                if m.payload in (Presence.ONLINE.value.encode(), Presence.ONLINE.value):
                    return time.monotonic()
                if spawn.poll() is not None:
                    raise RuntimeError("the agent exited before it came online")
    raise RuntimeError("no presence")


def one_run(h: fakehosts.HostState, broker: str, prefix: str, idle: float) -> dict[str, Any]:
    config = Path(h.agent_config or "")
    t0 = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "obstop", "agent", "--config", str(config)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=config.parent,
    )
    try:
        online = asyncio.run(_online_after(broker, presence_topic(h.host, prefix), proc, 30))
        started = online - t0
        p = psutil.Process(proc.pid)
        cpu_start = sum(p.cpu_times()[:2])
        time.sleep(idle)
        rss = p.memory_info().rss / 2**20
        uss = p.memory_full_info().uss / 2**20
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(15)
    return {
        "started_to_online_s": started,
        "cpu_s_to_online": cpu_start,
        "idle_rss_mb": rss,
        "idle_uss_mb": uss,
    }


def main() -> None:
    p = argparse.ArgumentParser(description="agent start to online, and idle RSS")
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--idle", type=float, default=2.0, help="seconds online before RSS is read")
    p.add_argument("--out", type=Path, default=Path("bench/results/agentstart.json"))
    a = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="obstop-bench-agent-") as tmp:
        work = Path(tmp)
        with mosquitto(work / "mqtt") as broker:
            d = work / "fleet"
            fleet = fakehosts.up(d, zones=1, servers_per_zone=1, broker=broker.url, first_ip=free_block(1))
            try:
                h = fleet.hosts[0]
                assert h.agent_pid is not None
                os.kill(h.agent_pid, signal.SIGTERM)  # the fleet's own agent: each run starts its own
                psutil.Process(h.agent_pid).wait(15)
                runs = []
                for i in range(a.runs):
                    row = one_run(h, broker.url, fleet.topic_prefix, a.idle)
                    runs.append(row)
                    print(json.dumps({"run": i, **row}), flush=True)
            finally:
                fakehosts.down(d)
    out: dict[str, Any] = {k: summary([r[k] for r in runs]) for k in runs[0]} | {"runs": runs}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(out, indent=2))
    s, r = out["started_to_online_s"], out["idle_rss_mb"]
    print(
        "| started → online, median (min to max) | idle RSS, median | idle USS, median |\n|---|---|---|\n"
        f"| {s['median']:.3f} s ({s['min']:.3f} to {s['max']:.3f}) | {r['median']:.1f} MB | "
        f"{out['idle_uss_mb']['median']:.1f} MB |"
    )


if __name__ == "__main__":
    main()
