"""Parallelism: a stop of N real fake observers through N agents over a real Mosquitto, against one host
through the same stack, the agent's procedure alone, and the local no-network floor on the same hosts.

For each N: the time from the stop API call to SUCCESSFUL (freeze off), several runs, each on a fresh
controller store with the fake observers started again; CPU seconds per process (controller, with and
without the benchmark's own polls; agents summed and per command; Mosquitto; the client); where the time
goes per stage (from the subtasks' start and finish times; per run and the median over runs); each idle
agent's RSS once online, before any command; and, run for run, the floor (bench/floor.py) on the same
observers. `--profile DIR` adds `--profile-runs` more runs per N, not
counted in the times, with py-spy on the controller (and with `--profile-agent` on agent h1) from the stop
call to SUCCESSFUL: DIR/controller-N-RUN.txt, DIR/agent-h1-N-RUN.txt, summarized into the JSON and printed
(bench/profsum.py: busy samples only, by our frames and by leaf).

    python -m bench.parallel --hosts 1 10 30 --runs 5 [--profile DIR [--profile-runs 3] [--profile-agent]]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

from bench import floor, profsum, spy, stages
from bench.common import Broker, mosquitto, restart_observers, summary, zones_for
from bench.stopcall import stop_via_controller
from obstop.agent import procedure
from obstop.agent.executors.local import LocalHost
from obstop.agent.protocol import ObserverTarget
from obstop.fakes import hosts as fakehosts
from obstop.fakes.install import FakeObserver, start
from obstop.fakes.net import free_block


def single_observer_stop(work: Path, runs: int) -> list[float]:
    """The agent's own procedure on one fake observer, by itself, in this process."""
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


def run_n(
    n: int,
    runs: int,
    work: Path,
    broker: Broker,
    profile: Path | None,
    profile_runs: int,
    profile_agent: bool,
) -> dict[str, Any]:
    d = work / f"fleet-{n}"
    zones, per_zone = zones_for(n)
    fleet = fakehosts.up(d, zones=zones, servers_per_zone=per_zone, broker=broker.url, first_ip=free_block(n))
    groups = {"agents": [h.agent_pid for h in fleet.hosts if h.agent_pid], "mosquitto": [broker.pid]}
    idle_rss = [
        psutil.Process(p).memory_info().rss / 2**20 for p in groups["agents"]
    ]  # online, no command yet
    rows: list[dict[str, Any]] = []
    floors: list[float] = []
    prof: dict[str, Any] = {}
    try:
        for run in range(runs):
            restart_observers(fleet, d)
            row = stop_via_controller(d / "controller.toml", d, f"run{run}", groups)
            if row["status"] != "SUCCESSFUL":
                raise RuntimeError(f"{n} hosts, run {run}: task {row['status']}; see {d}/run{run}.log")
            rows.append(row)
            restart_observers(fleet, d)  # the floor on the same observers, run for run
            t0 = time.monotonic()
            res = floor.stop_all([(h.ip, h.home) for h in fleet.hosts])
            floors.append(time.monotonic() - t0)
            assert not res["failed"], res
        files: dict[str, list[Path]] = {"controller": [], "agent_h1": []}
        for run in range(profile_runs if profile is not None else 0):
            assert profile is not None
            restart_observers(fleet, d)
            spies = {"controller": profile / f"controller-{n}-{run}.txt"}
            if profile_agent and fleet.hosts[0].agent_pid:
                spies[str(fleet.hosts[0].agent_pid)] = profile / f"agent-h1-{n}-{run}.txt"
            row = stop_via_controller(d / "controller.toml", d, f"profiled{run}", groups, profile=spies)
            prof.setdefault("seconds", []).append(row["seconds"])
            for who, path in spies.items():
                files["controller" if who == "controller" else "agent_h1"].append(path)
        prof |= {who: profsum.summarize(paths, 15) for who, paths in files.items() if paths}
    finally:
        fakehosts.down(d)
    times = [r["seconds"] for r in rows]
    timelines = [r["timeline"] for r in rows]
    cpu = {g: statistics.median(r["cpu_s"][g] for r in rows) for g in rows[0]["cpu_s"]}
    out = {
        "hosts": n,
        "stop_call_to_successful_s": summary(times),
        "answer_s": summary([r["answer_s"] for r in rows]),
        "floor_s": summary(floors),
        "ratio_to_floor": statistics.median(times) / statistics.median(floors),
        "cpu_s_median": cpu,
        "agent_cpu_ms_per_command_median": statistics.median(r["agent_cpu_ms_per_command"] for r in rows),
        "commands": rows[0]["commands"],
        "idle_agent_rss_mb": summary(idle_rss),
        "stages_median": stages.median_timeline(timelines),
        "runs": rows,
    }
    if prof:
        out["profile"] = prof
    return out


def main() -> None:
    p = argparse.ArgumentParser(description="parallel stop benchmark")
    p.add_argument("--hosts", type=int, nargs="+", default=[1, 10, 30])
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--out", type=Path, default=Path("bench/results/parallel.json"))
    p.add_argument("--profile", type=Path, default=None, help="profiled runs per N, files here")
    p.add_argument("--profile-runs", type=int, default=3, help="with --profile: how many profiled runs")
    p.add_argument("--profile-agent", action="store_true", help="with --profile: py-spy on agent h1 too")
    a = p.parse_args()
    if a.profile is not None:
        spy.require()
    with tempfile.TemporaryDirectory(prefix="obstop-bench-par-") as tmp:
        work = Path(tmp)
        single = summary(single_observer_stop(work, a.runs))
        print(json.dumps({"single_observer_stop_s": single}), flush=True)
        results: dict[str, Any] = {"single_observer_stop_s": single, "runs": []}
        with mosquitto(work / "mqtt") as broker:
            for n in a.hosts:
                res = run_n(n, a.runs, work, broker, a.profile, a.profile_runs, a.profile_agent)
                median = res["stop_call_to_successful_s"]["median"]
                res["ratio_to_single_procedure"] = median / single["median"]
                one = next((r for r in results["runs"] if r["hosts"] == 1), None)
                if one is not None:
                    res["ratio_to_one_host"] = median / one["stop_call_to_successful_s"]["median"]
                print(
                    json.dumps({k: v for k, v in res.items() if k not in ("runs", "stages_median")}),
                    flush=True,
                )
                print(stages.render(res["stages_median"], res["answer_s"]["median"]), flush=True)
                if "profile" in res:
                    for who in ("controller", "agent_h1"):
                        if who in res["profile"]:
                            print(profsum.render(res["profile"][who]), flush=True)
                results["runs"].append(res)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(results, indent=2))
    print(table(results))


def table(results: dict[str, Any]) -> str:
    """The markdown table RESULTS.md shows."""
    lines = [
        "| hosts | stop call → SUCCESSFUL, median (min to max) | floor | ÷ floor | ÷ N=1 | controller CPU "
        "(net of polls) | agents' CPU | agent CPU per command |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results["runs"]:
        t, cpu = r["stop_call_to_successful_s"], r["cpu_s_median"]
        one = r.get("ratio_to_one_host")
        lines.append(
            f"| {r['hosts']} | {t['median']:.3f} s ({t['min']:.3f} to {t['max']:.3f}) | "
            f"{r['floor_s']['median']:.3f} s | {r['ratio_to_floor']:.1f} | "
            f"{'' if one is None else f'{one:.2f}'} | "
            f"{cpu['controller']:.3f} s ({cpu['controller_net']:.3f}) | "
            f"{cpu['agents']:.3f} s | {r['agent_cpu_ms_per_command_median']:.1f} ms |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
