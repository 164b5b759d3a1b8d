"""Stored rows rendered the way OCP's API shows them (camelCase, ISO-8601 with offset)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Protocol

import orjson

from obstop.controller.store.models import Cluster, Server, Task, Zone


def iso(t: datetime | None) -> str | None:
    return None if t is None else t.astimezone().isoformat(timespec="milliseconds")


def context_string(ctx: dict[str, Any], parallel_idx: int | None = None) -> str:
    """OCP's Java toString of a task context: Context(parallelIdx=-1, stringMap={k=v}, listMap={k=[a, b]})."""
    idx = ctx.get("parallelIdx", -1) if parallel_idx is None else parallel_idx
    strings = ", ".join(f"{k}={v}" for k, v in ctx.get("stringMap", {}).items())
    lists = ", ".join(f"{k}=[{', '.join(str(x) for x in v)}]" for k, v in ctx.get("listMap", {}).items())
    return f"Context(parallelIdx={idx}, stringMap={{{strings}}}, listMap={{{lists}}})"


def server_view(s: Server) -> dict[str, Any]:
    return {
        "id": s.id,
        "ip": s.ip,
        "port": s.rpc_port,
        "svrPort": s.rpc_port,
        "sqlPort": s.sql_port,
        "zone": s.zone,
        "hostName": s.host,
        "homePath": s.home_path,
        "status": s.status,
        "updateTime": iso(s.updated_at),
    }


def cluster_view(c: Cluster, zones: list[Zone], servers: list[Server]) -> dict[str, Any]:
    return {
        "id": c.id,
        "name": c.name,
        "obClusterId": c.ob_cluster_id,
        "status": c.status,
        "updateTime": iso(c.updated_at),
        "zones": [
            {
                "name": z.name,
                "status": z.status,
                "updateTime": iso(z.updated_at),
                "servers": [server_view(s) for s in servers if s.zone == z.name],
            }
            for z in zones
        ],
    }


class SubtaskFields(Protocol):
    """What a subtask view reads: a stored Subtask, or the row just inserted (no read-back)."""

    @property
    def id(self) -> int: ...
    @property
    def name(self) -> str: ...
    @property
    def description(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def operation(self) -> str: ...
    @property
    def upstreams(self) -> list[int]: ...
    @property
    def downstreams(self) -> list[int]: ...
    @property
    def parallel_idx(self) -> int: ...
    @property
    def run_time(self) -> int: ...
    @property
    def timeout(self) -> int: ...
    @property
    def start_time(self) -> datetime | None: ...
    @property
    def finish_time(self) -> datetime | None: ...
    @property
    def context(self) -> dict[str, Any]: ...


def subtask_view(s: SubtaskFields) -> dict[str, Any]:
    """A subtask in full. Written for speed (a stop answers thousands of them): its context is rendered
    as context_string() renders {stringMap: its scalars, listMap: its lists}, in one pass."""
    ctx = s.context
    strings = ", ".join(f"{k}={v}" for k, v in ctx.items() if not isinstance(v, list))
    lists = ", ".join(f"{k}=[{', '.join(str(x) for x in v)}]" for k, v in ctx.items() if isinstance(v, list))
    start, finish = s.start_time, s.finish_time
    return {
        "id": s.id,
        "name": s.name,
        "description": s.description,
        "status": s.status,
        "operation": s.operation,
        "upstreams": list(s.upstreams),
        "downstreams": list(s.downstreams),
        "parallelIdx": s.parallel_idx,
        "runTime": s.run_time,
        "timeout": s.timeout,
        "startTime": None if start is None else iso(start),
        "finishTime": None if finish is None else iso(finish),
        "context": f"Context(parallelIdx={s.parallel_idx}, stringMap={{{strings}}}, listMap={{{lists}}})",
    }


def _prohibits_rollback(ctx: dict[str, Any]) -> bool:
    value = ctx.get("stringMap", {}).get("prohibit_rollback", ctx.get("prohibit_rollback", "false"))
    return str(value).lower() == "true"


def task_view(
    t: Task,
    cluster: Cluster | None,
    subtasks: Sequence[SubtaskFields] | None,
    brief: bytes | None = None,
) -> dict[str, Any]:
    """One task: its subtasks in full under `tasks` (the detail), or in brief under `subtasks` (the list:
    a JSON array of {id, name, description, status, operation}, as the store wrote it)."""
    out: dict[str, Any] = {
        "id": t.id,
        "name": t.name,
        "type": "MANUAL",
        "status": t.status,
        "operation": t.operation or "EXECUTE",
        # OCP: the task's context says so, or a subtask that has started does
        "prohibitRollback": _prohibits_rollback(t.context)
        or any(s.status != "PENDING" and _prohibits_rollback(s.context) for s in subtasks or ()),
        "cluster": {
            "id": t.cluster_id,
            "name": cluster.name if cluster else None,
            "obClusterId": cluster.ob_cluster_id if cluster else None,
        },
        "creator": {"id": t.creator_id, "name": t.creator_name},
        "context": context_string(t.context),
        "startTime": iso(t.start_time),
        "finishTime": iso(t.finish_time),
    }
    if subtasks is not None:
        out["tasks"] = [subtask_view(s) for s in subtasks]
    if brief is not None:
        out["subtasks"] = orjson.Fragment(brief)
    return out


def page(number: int, size: int, total: int) -> dict[str, int]:
    return {
        "number": number,
        "size": size,
        "totalElements": total,
        "totalPages": -(-total // size) if size else 0,
    }
