"""An agent's start and idle footprint: from `obstop agent` spawned to its presence online on the broker,
and its resident memory once idle (one fake host, its observer watched; no [[ssh]] hosts).

Each run stops the agent (SIGTERM: it publishes offline) and starts it again; the clock runs from the
spawn to the first retained `online` the broker hands a fresh subscriber after it. RSS is read after
`--idle` seconds online. CPU seconds of the agent's start are in every run.

With `--commands N`, the agent's CPU per command: N probe + stop pairs signed with the controller's key and
sent straight to one agent (no controller), the observer relaunched between pairs; the agent's CPU (every
thread, to the nanosecond) around each command, medians and minima (the minimum is what the command
costs on a quiet core), with the events each command drew and the agent's RSS after them.

    python -m bench.agentstart --runs 5 [--idle 2] [--commands 30] [--out bench/results/agentstart.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiomqtt
import psutil

from bench.common import mosquitto, summary
from bench.cpu import own_cpu
from obstop.agent import signing
from obstop.agent.protocol import (
    CommandKind,
    ObserverTarget,
    Presence,
    ProbeArgs,
    ResultEvent,
    StopArgs,
    commands_topic,
    events_topic,
    new_command,
    parse_event,
    presence_topic,
)
from obstop.fakes import hosts as fakehosts
from obstop.fakes.install import relaunch
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


def _spawn_agent(h: fakehosts.HostState) -> subprocess.Popen[bytes]:
    """`obstop agent` as systemd starts it, on the host's config."""
    config = Path(h.agent_config or "")
    return subprocess.Popen(
        [sys.executable, "-m", "obstop", "agent", "--config", str(config)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=config.parent,
    )


def one_run(h: fakehosts.HostState, broker: str, prefix: str, idle: float) -> dict[str, Any]:
    t0 = time.monotonic()
    proc = _spawn_agent(h)
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


def per_command(h: fakehosts.HostState, fleet_dir: Path, broker: str, prefix: str, n: int) -> dict[str, Any]:
    """The agent's CPU per probe and per stop, sent straight to it (see the module's docstring)."""
    proc = _spawn_agent(h)
    try:
        asyncio.run(_online_after(broker, presence_topic(h.host, prefix), proc, 30))
        agent = psutil.Process(proc.pid)
        out = asyncio.run(_commands(agent, h, fleet_dir, broker, prefix, n))
        out["rss_after_mb"] = agent.memory_info().rss / 2**20
        return out
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(15)


async def _commands(
    agent: psutil.Process, h: fakehosts.HostState, fleet_dir: Path, broker: str, prefix: str, n: int
) -> dict[str, Any]:
    key = signing.load_private(fleet_dir / "keys" / signing.PRIVATE_NAME)
    target = ObserverTarget(host=h.host, ip=h.ip, home_path=h.home)
    host, port = broker.removeprefix("mqtt://").rsplit(":", 1)
    costs: dict[str, list[float]] = {"probe": [], "stop": []}
    events: dict[str, int] = {}
    pairs = (
        (CommandKind.PROBE_OBSERVER, ProbeArgs(target=target)),
        (CommandKind.STOP_OBSERVER, StopArgs(target=target)),
    )
    async with aiomqtt.Client(host, int(port), identifier=f"bench-agentcmd-{os.getpid()}") as c:
        await c.subscribe(events_topic(h.host, prefix), qos=1)
        for i in range(n):
            for kind, args in pairs:
                name = "probe" if kind is CommandKind.PROBE_OBSERVER else "stop"
                cmd = signing.sign(
                    new_command(h.host, kind, args, command_id=f"{name}-{os.getpid()}-{i}"), key
                )
                before = own_cpu(agent)
                await c.publish(commands_topic(h.host, prefix), cmd.model_dump_json(), qos=1)
                seen = 0
                async with asyncio.timeout(30):
                    async for m in c.messages:
                        event = parse_event(bytes(m.payload))
                        if event.command_id == cmd.command_id:
                            seen += 1
                            if isinstance(event, ResultEvent):
                                break
                await asyncio.sleep(0.1)  # what the command left to do after its result
                costs[name].append(own_cpu(agent) - before)
                events[name] = seen
            await asyncio.to_thread(relaunch, Path(h.home))
            await asyncio.sleep(0.2)
    out: dict[str, Any] = {}
    for name, values in costs.items():
        ms = [v * 1000 for v in values]
        out[f"{name}_cpu_ms"] = {"median": statistics.median(ms), "min": min(ms), "runs": len(ms)}
        out[f"{name}_events"] = events[name]
    return out


def main() -> None:
    p = argparse.ArgumentParser(description="agent start to online, and idle RSS")
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--idle", type=float, default=2.0, help="seconds online before RSS is read")
    p.add_argument("--commands", type=int, default=0, help="probe + stop pairs sent straight to the agent")
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
                commands = per_command(h, d, broker.url, fleet.topic_prefix, a.commands) if a.commands else {}
            finally:
                fakehosts.down(d)
    out: dict[str, Any] = {k: summary([r[k] for r in runs]) for k in runs[0]} | {"runs": runs}
    if commands:
        out["per_command"] = commands
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(out, indent=2))
    s, r, cpu = out["started_to_online_s"], out["idle_rss_mb"], out["cpu_s_to_online"]
    print(
        "| started → online, median (min to max) | CPU to online | idle RSS, median | idle USS, median |\n"
        "|---|---|---|---|\n"
        f"| {s['median']:.3f} s ({s['min']:.3f} to {s['max']:.3f}) | {cpu['median']:.2f} s | "
        f"{r['median']:.1f} MB | {out['idle_uss_mb']['median']:.1f} MB |"
    )
    if commands:
        pc = commands
        print(
            "\n| agent CPU per command, median (min) | events |\n|---|---|\n"
            f"| probe: {pc['probe_cpu_ms']['median']:.2f} ms ({pc['probe_cpu_ms']['min']:.2f}) | "
            f"{pc['probe_events']} |\n"
            f"| stop: {pc['stop_cpu_ms']['median']:.2f} ms ({pc['stop_cpu_ms']['min']:.2f}) | "
            f"{pc['stop_events']} |\n(RSS after them: {pc['rss_after_mb']:.1f} MB)"
        )


if __name__ == "__main__":
    main()
