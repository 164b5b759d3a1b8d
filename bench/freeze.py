"""Freeze on at scale (issue 12): the same stop of N servers through the simulated swarm with the minor
freeze off and on, side by side in one run (alternating, `--runs` each, medians), the freeze against a
fake cluster's SQL (bench/clustersql.py) whose checkpoints advance `--freeze-delay` after the freeze.
Target: freeze on <= 2x freeze off at 1,000 servers, with one pooled SQL session for the waits and one
checkpoint statement per poll for all waiting servers (the fake's record, in the JSON and the table).

    python -m bench.freeze --servers 1000 --stores sqlite --runs 3 --out bench/results/freeze.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
from pathlib import Path
from typing import Any

from bench import stages
from bench.scale import run_one


def _median(runs: list[dict[str, Any]], key: str) -> float:
    return float(statistics.median(r[key] for r in runs))


def _cpu(runs: list[dict[str, Any]], who: str) -> float:
    return float(statistics.median(r["cpu_s"].get(who, 0.0) for r in runs))


def summarize(n: int, store: str, off: list[dict[str, Any]], on: list[dict[str, Any]]) -> dict[str, Any]:
    sql = [r["cluster_sql"] for r in on]
    return {
        "servers": n,
        "store": store,
        "runs": len(on),
        "off_total_s": _median(off, "total_s"),
        "on_total_s": _median(on, "total_s"),
        "ratio": _median(on, "total_s") / _median(off, "total_s"),
        "off_controller_cpu_s": _cpu(off, "controller"),
        "on_controller_cpu_s": _cpu(on, "controller"),
        "cpu_ratio": _cpu(on, "controller") / _cpu(off, "controller"),
        "on_cluster_sql_cpu_s": _cpu(on, "cluster_sql"),
        "poll_connections": max(s["poll_connections"] for s in sql),
        "checkpoint_polls": statistics.median(s["checkpoint_polls"] for s in sql),
        "servers_per_poll_max": max(s["servers_per_poll_max"] for s in sql),
        "checkpoint_reads_before_freeze": max(s["checkpoint_reads_before_freeze"] for s in sql),
        "freeze_delay_s": on[0]["freeze_delay_s"],
        "load_avg_1m": statistics.median(r["load_avg_1m"] for r in off + on),
    }


def table(rows: list[dict[str, Any]]) -> str:
    out = [
        "| servers | store | freeze off | freeze on | on ÷ off | controller CPU off / on (÷) | fake SQL CPU "
        "| sessions for the waits | polls (max servers per statement) | checkpoint reads before the freeze "
        "| load |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        out.append(
            f"| {r['servers']:,} | {r['store']} | {r['off_total_s']:.2f} s | {r['on_total_s']:.2f} s "
            f"| **{r['ratio']:.2f}** | {r['off_controller_cpu_s']:.2f} / {r['on_controller_cpu_s']:.2f} s "
            f"({r['cpu_ratio']:.2f}) "
            f"| {r['on_cluster_sql_cpu_s']:.2f} s | {r['poll_connections']} "
            f"| {r['checkpoint_polls']:g} ({r['servers_per_poll_max']}) "
            f"| {r['checkpoint_reads_before_freeze']} | {r['load_avg_1m']:.1f} |"
        )
    return "\n".join(out)


def main() -> None:
    p = argparse.ArgumentParser(description="the freeze on vs off at scale, side by side")
    p.add_argument("--servers", type=int, nargs="+", default=[1000])
    p.add_argument("--stores", nargs="+", default=["sqlite"], choices=["sqlite", "postgres"])
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--delay", type=float, default=0.05, help="each simulated command's duration")
    p.add_argument("--freeze-delay", type=float, default=0.2, help="seconds from a freeze to its checkpoint")
    p.add_argument("--out", type=Path, default=Path("bench/results/freeze.json"))
    a = p.parse_args()
    rows, raw = [], []
    with tempfile.TemporaryDirectory(prefix="obstop-bench-freeze-") as tmp:
        for store in a.stores:
            for n in a.servers:
                off: list[dict[str, Any]] = []
                on: list[dict[str, Any]] = []
                for i in range(a.runs):
                    for freeze, into in ((False, off), (True, on)):
                        work = Path(tmp) / f"{store}-{n}-{i}-{'on' if freeze else 'off'}"
                        res = run_one(
                            n, store, a.delay, work, None, freeze=freeze, freeze_delay=a.freeze_delay
                        )
                        brief = {k: res[k] for k in ("servers", "store", "freeze", "total_s", "cpu_s")}
                        print(json.dumps({**brief, "cluster_sql": res["cluster_sql"]}), flush=True)
                        into.append(res)
                for label, runs in (("freeze off", off), ("freeze on", on)):
                    print(f"{store}, {n} servers, {label} (medians):", flush=True)
                    print(stages.render(stages.median_timeline([r["stages"] for r in runs])), flush=True)
                rows.append(summarize(n, store, off, on))
                raw.append({"servers": n, "store": store, "off": off, "on": on})
    rendered = table(rows)
    print(rendered)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps({"summary": rows, "runs": raw, "cpus": os.cpu_count()}, indent=2))
    a.out.with_suffix(".md").write_text(rendered + "\n")


if __name__ == "__main__":
    main()
