"""Where a stop's time goes, per stage, from its subtasks' own startTime/finishTime (as PERF_NOTES.md shows).

Times are relative to the first subtask's start. Wait nodes are joined into one line (their count and mean);
each other stage says how long after the previous stage's last finish it began (`gap_before_ms`: the
orchestration between two stages, wait node included).
"""

from __future__ import annotations

import statistics
from datetime import datetime
from typing import Any

WAIT = "Wait node"


def _t(value: str) -> datetime:
    return datetime.fromisoformat(value)


def timeline(task: dict[str, Any]) -> dict[str, Any]:
    """Per stage in DAG order: count, first start, last finish, mean and max per subtask, gap before it."""
    subs = [s for s in task["tasks"] if s["startTime"] and s["finishTime"]]
    t0 = min(_t(s["startTime"]) for s in subs)
    stages: dict[str, dict[str, Any]] = {}
    waits: list[float] = []
    for s in subs:
        st, fi = (_t(s["startTime"]) - t0).total_seconds(), (_t(s["finishTime"]) - t0).total_seconds()
        if s["name"] == WAIT:
            waits.append(fi - st)
            continue
        e = stages.setdefault(s["name"], {"stage": s["name"], "count": 0, "first": st, "last": fi, "d": []})
        e["count"] += 1
        e["first"], e["last"] = min(e["first"], st), max(e["last"], fi)
        e["d"].append(fi - st)
    out, prev = [], None
    for e in sorted(stages.values(), key=lambda e: e["first"]):
        out.append(
            {
                "stage": e["stage"],
                "count": e["count"],
                "first_start_s": round(e["first"], 3),
                "last_finish_s": round(e["last"], 3),
                "mean_ms": round(1000 * statistics.mean(e["d"]), 1),
                "max_ms": round(1000 * max(e["d"]), 1),
                "gap_before_ms": None if prev is None else round(1000 * (e["first"] - prev), 1),
            }
        )
        prev = e["last"]
    return {
        "task_start_to_first_subtask_ms": round(1000 * (t0 - _t(task["startTime"])).total_seconds(), 1),
        "first_subtask_to_last_finish_s": round(max(e["last_finish_s"] for e in out), 3),
        "stages": out,
        "wait_nodes": {
            "count": len(waits),
            "mean_ms": round(1000 * statistics.mean(waits), 1) if waits else None,
        },
    }


def median_timeline(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Stage by stage, the median over runs of every number (the DAG is the same in every run)."""

    def med(values: list[Any]) -> Any:
        present = [v for v in values if v is not None]
        return round(statistics.median(present), 3) if present else None

    first = runs[0]
    stages = []
    for i, s in enumerate(first["stages"]):
        same = [r["stages"][i] for r in runs]
        stages.append(
            {"stage": s["stage"], "count": s["count"]}
            | {k: med([x[k] for x in same]) for k in s if k not in ("stage", "count")}
        )
    return {
        "runs": len(runs),
        "task_start_to_first_subtask_ms": med([r["task_start_to_first_subtask_ms"] for r in runs]),
        "first_subtask_to_last_finish_s": med([r["first_subtask_to_last_finish_s"] for r in runs]),
        "stages": stages,
        "wait_nodes": {
            "count": first["wait_nodes"]["count"],
            "mean_ms": med([r["wait_nodes"]["mean_ms"] for r in runs]),
        },
    }


def render(tl: dict[str, Any], answer_s: float | None = None) -> str:
    """A markdown table of a timeline, as in PERF_NOTES.md."""
    lines = ["| stage | count | first start → last finish | mean (max) per subtask | gap before |"]
    lines.append("|---|---|---|---|---|")
    if answer_s is not None:
        lines.append(f"| (the stop call itself: answer) | | {answer_s:.3f} s | | |")
    for s in tl["stages"]:
        gap = "" if s["gap_before_ms"] is None else f"{s['gap_before_ms']:.0f} ms"
        lines.append(
            f"| {s['stage']} | {s['count']} | {s['first_start_s']:.3f} → {s['last_finish_s']:.3f} | "
            f"{s['mean_ms']:.0f} ms ({s['max_ms']:.0f}) | {gap} |"
        )
    w = tl["wait_nodes"]
    if w["count"]:
        lines.append(f"\nWait nodes: {w['count']}, mean {w['mean_ms']:.0f} ms.")
    return "\n".join(lines)
