"""A task's DAG for people (a rich table) and for tools (json, Graphviz dot, Mermaid); a task list."""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text

COLORS = {
    "SUCCESSFUL": "green",
    "FAILED": "bold red",
    "RUNNING": "yellow",
    "READY": "cyan",
    "PENDING": "dim",
    "CANCELING": "magenta",
}


def target_of(sub: dict[str, Any]) -> str:
    ctx = sub.get("context", "")
    server = re.search(r"server_id=(\d+)", ctx)
    zone = re.search(r"zone_name=([^,}]+)", ctx)
    if server:
        return f"server {server.group(1)}" + (f" ({zone.group(1)})" if zone else "")
    return zone.group(1) if zone else ""


def _duration(sub: dict[str, Any], now: datetime) -> str:
    if not sub.get("startTime"):
        return ""
    start = datetime.fromisoformat(sub["startTime"])
    end = datetime.fromisoformat(sub["finishTime"]) if sub.get("finishTime") else now.astimezone(start.tzinfo)
    ms = (end - start).total_seconds() * 1000
    return f"{ms:.0f} ms" if ms < 10_000 else f"{ms / 1000:.1f} s"


def table(task: dict[str, Any], failed_logs: dict[int, str] | None = None) -> Group:
    now = datetime.now().astimezone()
    status = task["status"]
    operation = task.get("operation", "EXECUTE")
    title = Text.assemble(
        f"task {task['id']} · {task['name']} · cluster {task['cluster']['name']} · ",
        (status, COLORS.get(status, "")),
        f" ({operation})" if operation != "EXECUTE" else "",
    )
    t = Table(title=title, title_justify="left", expand=False)
    for col in ("id", "subtask", "target", "status", "op", "run", "duration"):
        t.add_column(col, justify="right" if col in ("id", "run", "duration") else "left")
    for sub in task["tasks"]:
        op = sub.get("operation", "EXECUTE")
        t.add_row(
            str(sub["id"]),
            sub["name"],
            target_of(sub),
            Text(sub["status"], COLORS.get(sub["status"], "")),
            "" if op == "EXECUTE" else op,
            str(sub.get("runTime", "")),
            _duration(sub, now),
        )
    parts: list[Any] = [t]
    for sid, log in (failed_logs or {}).items():
        tail = "\n".join(log.strip().splitlines()[-8:])
        parts.append(Text(f"\nsubtask {sid} failed; last lines of its log:\n", style="bold red"))
        parts.append(Text(tail))
    return Group(*parts)


def task_list(data: dict[str, Any]) -> Table:
    """A page of OCP's task list: each task with its subtasks counted by status."""
    page = data["page"]
    t = Table(
        title=f"tasks · page {page['number']} of {page['totalPages']} · {page['totalElements']} in all",
        title_justify="left",
    )
    for col in ("id", "name", "cluster", "status", "operation", "started", "finished", "subtasks"):
        t.add_column(col, justify="right" if col == "id" else "left")
    for task in data["contents"]:
        counts: dict[str, int] = {}
        for sub in task.get("subtasks", []):
            counts[sub["status"]] = counts.get(sub["status"], 0) + 1
        t.add_row(
            str(task["id"]),
            task["name"],
            str(task["cluster"].get("name") or task["cluster"]["id"]),
            Text(task["status"], COLORS.get(task["status"], "")),
            task.get("operation", ""),
            (task.get("startTime") or "")[:19],
            (task.get("finishTime") or "")[:19],
            " ".join(f"{n} {s}" for s, n in sorted(counts.items())),
        )
    return t


def dot(task: dict[str, Any]) -> str:
    lines = [f'digraph "task {task["id"]}" {{', "  rankdir=LR;", "  node [shape=box, style=rounded];"]
    for sub in task["tasks"]:
        label = f"{sub['name']}\\n{target_of(sub)}\\n{sub['status']}".replace("\\n\\n", "\\n")
        lines.append(f'  s{sub["id"]} [label="{label}"];')
    for sub in task["tasks"]:
        lines.extend(f"  s{up} -> s{sub['id']};" for up in sub["upstreams"])
    lines.append("}")
    return "\n".join(lines)


def mermaid(task: dict[str, Any]) -> str:
    lines = ["flowchart LR"]
    for sub in task["tasks"]:
        label = " ".join(x for x in (sub["name"], target_of(sub), sub["status"]) if x)
        lines.append(f'  s{sub["id"]}["{label}"]')
    for sub in task["tasks"]:
        lines.extend(f"  s{up} --> s{sub['id']}" for up in sub["upstreams"])
    return "\n".join(lines)


def as_json(task: dict[str, Any]) -> str:
    return json.dumps(task, indent=2)


def stages(tasks: list[dict[str, Any]]) -> str:
    """A DAG's stages in order, fan-outs counted: Prepare stop cluster -> Prepare stop OB zone x3 -> ..."""
    out: list[tuple[str, int]] = []
    for t in tasks:
        if out and out[-1][0] == t["name"]:
            out[-1] = (t["name"], out[-1][1] + 1)
        else:
            out.append((t["name"], 1))
    return " → ".join(name + (f" x{n}" if n > 1 else "") for name, n in out)


def plan(data: dict[str, Any]) -> Group:
    """A plan (dry run) for people: per server what would happen and what blocks it; then the rest."""
    verdict = ("would run", "green") if data["executable"] else ("BLOCKED", "bold red")
    c = data["cluster"]
    title = Text.assemble(
        f"plan · {data['operation']} · cluster {c['name']} ({c['id']}) {c['status']} · ", verdict
    )
    t = Table(title=title, title_justify="left")
    for col in ("server", "zone", "host", "status", "observed", "would", "blocked by"):
        t.add_column(col, justify="right" if col == "server" else "left", overflow="fold")
    for s in data["servers"]:
        t.add_row(
            str(s["id"]),
            s["zone"],
            s["host"],
            s["status"],
            s["observed"],
            s["action"],
            Text("; ".join(s["blockers"]), "red"),
        )
    parts: list[Any] = [t]
    cluster_blockers = [b for b in data["blockers"] if not b.startswith("server ")]
    for label, lines, style in (("blocked by", cluster_blockers, "red"), ("notes", data["notes"], "")):
        if lines:
            parts.append(Text(f"{label}:", style=f"bold {style}".strip()))
            parts.extend(Text(f"  - {line}", style=style) for line in lines)
    for s in data["servers"]:
        for note in s["notes"]:
            parts.append(Text(f"  server {s['id']}: {note}", style="dim"))
    parts.append(Text(f"DAG ({len(data['tasks'])} subtasks): {stages(data['tasks'])}"))
    parts.append(Text("nothing was done: no task was created, nothing signalled, no status moved", "dim"))
    return Group(*parts)


def audit(data: dict[str, Any]) -> Table:
    """A page of the audit trail."""
    page = data["page"]
    t = Table(
        title=f"audit · page {page['number']} of {page['totalPages']} · {page['totalElements']} in all",
        title_justify="left",
    )
    for col in ("time", "user", "client", "call", "body", "status", "traceId"):
        t.add_column(col, overflow="fold")
    for e in data["contents"]:
        call = f"{e['method']} {e['path']}" + (f"?{e['query']}" if e["query"] else "")
        ok = 200 <= e["status"] < 300
        t.add_row(
            (e["time"] or "")[:19].replace("T", " "),
            e["user"],
            e["client"],
            call,
            e["body"],
            Text(str(e["status"]), "green" if ok else "red"),
            e["traceId"],
        )
    return t
