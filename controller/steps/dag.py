"""The DAGs of "Stop OB cluster" and "Start OB cluster", as OCP builds them (see the seed), fanned out
per zone and server:

Stop:  Prepare stop cluster -> Prepare stop OB zone xZ -> Wait node -> Prepare stop observer xS ->
       Wait node -> Stop observer process xS -> Wait node -> Update observer status xS -> Wait node ->
       Update zone status xZ -> Update OB cluster status
Start: Prepare start cluster -> Prepare start OB zone xZ -> Wait node -> Start observer process xS ->
       Wait node -> Update observer status xS -> Wait node -> Update zone status xZ ->
       Update OB cluster status

Each zone and server subtask records the status its zone or server had (`former_*_status`): what a
rollback goes back to.

Partial stops (OCP's "Stop OB zone", "Start OB zone", "Stop OB server", "Start OB server") touch one zone
or one server, the majority check first, STOP ZONE/SERVER in SQL before the processes, START after:

Stop zone:    Prepare stop OB zone -> Stop OB zone service -> Prepare stop observer xS -> Wait node ->
              Stop observer process xS -> Wait node -> Update observer status xS -> Wait node ->
              Update zone status -> Update OB cluster status
Start zone:   Prepare start OB zone -> Start observer process xS -> Wait node -> Start OB zone service ->
              Update observer status xS -> Wait node -> Update zone status -> Update OB cluster status
Stop server:  Prepare stop OB server -> Stop OB server service -> Prepare stop observer ->
              Stop observer process -> Update observer status -> Update zone status ->
              Update OB cluster status
Start server: Start observer process -> Start OB server service -> Update observer status ->
              Update zone status -> Update OB cluster status
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from obstop.controller.states.intent import Partial
from obstop.controller.steps.run import TaskOptions

TASK_NAME = "Stop OB cluster"
START_TASK_NAME = "Start OB cluster"
PARTIAL_TASK_NAMES: dict[Partial, str] = {
    Partial.STOP_ZONE: "Stop OB zone",
    Partial.START_ZONE: "Start OB zone",
    Partial.STOP_SERVER: "Stop OB server",
    Partial.START_SERVER: "Start OB server",
}


class Node(StrEnum):
    """Keys of the nodes other steps look up (a node key is unique within its task)."""

    PREPARE_CLUSTER = "prepare_cluster"


@dataclass(frozen=True)
class NodeSpec:
    """One subtask of a DAG before it is stored: its key in the task, its step, and its upstreams by key."""

    node: str
    step: str
    name: str
    description: str
    upstreams: tuple[str, ...]
    parallel_idx: int = -1
    timeout: int = 60
    context: dict[str, Any] = field(default_factory=dict)


class Step(StrEnum):
    PREPARE_CLUSTER = "prepare_stop_cluster"
    PREPARE_ZONE = "prepare_stop_zone"
    PREPARE_OBSERVER = "prepare_stop_observer"
    STOP_PROCESS = "stop_observer_process"
    UPDATE_OBSERVER = "update_observer_status"
    UPDATE_ZONE = "update_zone_status"
    UPDATE_CLUSTER = "update_cluster_status"
    WAIT = "wait"
    PREPARE_START_CLUSTER = "prepare_start_cluster"
    PREPARE_START_ZONE = "prepare_start_zone"
    START_PROCESS = "start_observer_process"
    STARTED_OBSERVER = "update_started_observer_status"
    STARTED_ZONE = "update_started_zone_status"
    STARTED_CLUSTER = "update_started_cluster_status"
    # partial stops
    PREPARE_ZONE_STOP = "prepare_zone_stop"
    PREPARE_SERVER_STOP = "prepare_server_stop"
    STOP_ZONE_SERVICE = "stop_zone_service"
    STOP_SERVER_SERVICE = "stop_server_service"
    START_ZONE_SERVICE = "start_zone_service"
    START_SERVER_SERVICE = "start_server_service"
    PARTIAL_ZONE = "update_partial_zone_status"
    PARTIAL_CLUSTER = "update_partial_cluster_status"


PARTIAL_STEPS = frozenset(
    {
        Step.PREPARE_ZONE_STOP,
        Step.PREPARE_SERVER_STOP,
        Step.STOP_ZONE_SERVICE,
        Step.STOP_SERVER_SERVICE,
        Step.START_ZONE_SERVICE,
        Step.START_SERVER_SERVICE,
        Step.PARTIAL_ZONE,
        Step.PARTIAL_CLUSTER,
    }
)


NAMES: dict[Step, str] = {
    Step.PREPARE_CLUSTER: "Prepare stop cluster",
    Step.PREPARE_ZONE: "Prepare stop OB zone",
    Step.PREPARE_OBSERVER: "Prepare stop observer",
    Step.STOP_PROCESS: "Stop observer process",
    Step.UPDATE_OBSERVER: "Update observer status",
    Step.UPDATE_ZONE: "Update zone status",
    Step.UPDATE_CLUSTER: "Update OB cluster status",
    Step.WAIT: "Wait node",
    Step.PREPARE_START_CLUSTER: "Prepare start cluster",
    Step.PREPARE_START_ZONE: "Prepare start OB zone",
    Step.START_PROCESS: "Start observer process",
    Step.STARTED_OBSERVER: "Update observer status",
    Step.STARTED_ZONE: "Update zone status",
    Step.STARTED_CLUSTER: "Update OB cluster status",
    Step.PREPARE_ZONE_STOP: "Prepare stop OB zone",
    Step.PREPARE_SERVER_STOP: "Prepare stop OB server",
    Step.STOP_ZONE_SERVICE: "Stop OB zone service",
    Step.STOP_SERVER_SERVICE: "Stop OB server service",
    Step.START_ZONE_SERVICE: "Start OB zone service",
    Step.START_SERVER_SERVICE: "Start OB server service",
    Step.PARTIAL_ZONE: "Update zone status",
    Step.PARTIAL_CLUSTER: "Update OB cluster status",
}


def task_context(
    cluster_id: int,
    cluster_name: str,
    former_status: str,
    server_ids: Sequence[int],
    zone_names: Sequence[str],
    options: TaskOptions | None = None,
    host_names: Sequence[str] | None = None,
) -> dict[str, Any]:
    """The task context as OCP keeps it: a string map and a list map."""
    strings = {
        "cluster_name": cluster_name,
        "cluster_id": str(cluster_id),
        "former_cluster_status": former_status,
        "prohibit_rollback": "false",
        **(options.strings() if options is not None else {}),
    }
    lists: dict[str, list[Any]] = {"server_ids": [int(x) for x in server_ids]}
    if host_names is not None:
        lists["host_ids"] = list(host_names)
    lists["zone_names"] = list(zone_names)
    return {"parallelIdx": -1, "stringMap": strings, "listMap": lists}


class _Builder:
    def __init__(self, step_timeout: int) -> None:
        self.nodes: list[NodeSpec] = []
        self.step_timeout = step_timeout

    def add(
        self,
        node: str,
        step: Step,
        ups: Sequence[str],
        idx: int = -1,
        ctx: dict[str, Any] | None = None,
        timeout: int | None = None,
    ) -> str:
        self.nodes.append(
            NodeSpec(
                node=node,
                step=step,
                name=NAMES[step],
                description=NAMES[step],
                upstreams=tuple(ups),
                parallel_idx=idx,
                timeout=timeout or self.step_timeout,
                context=ctx or {},
            )
        )
        return node

    def fan(
        self,
        prefix: str,
        step: Step,
        ups: Sequence[str],
        items: Sequence[dict[str, Any]],
        timeout: int | None = None,
    ) -> list[str]:
        return [
            self.add(f"{prefix}:{i}", step, ups, i if len(items) > 1 else -1, item, timeout)
            for i, item in enumerate(items)
        ]


def _per_zone(zones: Sequence[str | tuple[str, str]]) -> list[dict[str, Any]]:
    out = []
    for z in zones:
        name, status = (z, None) if isinstance(z, str) else z
        out.append({"zone_name": name} | ({"former_zone_status": status} if status else {}))
    return out


def _per_server(servers: Sequence[tuple[int, str] | tuple[int, str, str]]) -> list[dict[str, Any]]:
    out = []
    for s in servers:
        item: dict[str, Any] = {"server_id": s[0], "zone_name": s[1]}
        if len(s) > 2:
            item["former_server_status"] = s[2]
        out.append(item)
    return out


def build_stop_dag(
    zones: Sequence[str | tuple[str, str]],
    servers: Sequence[tuple[int, str] | tuple[int, str, str]],
    *,
    process_timeout: int,
    step_timeout: int,
    prepare_timeout: int | None = None,
) -> list[NodeSpec]:
    """zones: names, or (name, status); servers: (id, zone) or (id, zone, status). Node keys are stable,
    so a (task, node) pair is unique."""
    b = _Builder(step_timeout)
    per_zone, per_server = _per_zone(zones), _per_server(servers)
    start = b.add(Node.PREPARE_CLUSTER, Step.PREPARE_CLUSTER, [])
    prep_zones = b.fan("prepare_zone", Step.PREPARE_ZONE, [start], per_zone)
    w1 = b.add("wait:1", Step.WAIT, prep_zones)
    # each server's checkpoint wait runs in its Prepare stop observer: bounded by the freeze timeout
    prep_servers = b.fan(
        "prepare_observer", Step.PREPARE_OBSERVER, [w1], per_server, prepare_timeout or process_timeout
    )
    w2 = b.add("wait:2", Step.WAIT, prep_servers)
    stops = b.fan("stop_process", Step.STOP_PROCESS, [w2], per_server, process_timeout)
    w3 = b.add("wait:3", Step.WAIT, stops)
    upd_servers = b.fan("update_observer", Step.UPDATE_OBSERVER, [w3], per_server)
    w4 = b.add("wait:4", Step.WAIT, upd_servers)
    upd_zones = b.fan("update_zone", Step.UPDATE_ZONE, [w4], per_zone)
    b.add("update_cluster", Step.UPDATE_CLUSTER, upd_zones)
    return b.nodes


def build_start_dag(
    zones: Sequence[str | tuple[str, str]],
    servers: Sequence[tuple[int, str] | tuple[int, str, str]],
    *,
    process_timeout: int,
    step_timeout: int,
) -> list[NodeSpec]:
    b = _Builder(step_timeout)
    per_zone, per_server = _per_zone(zones), _per_server(servers)
    start = b.add(Node.PREPARE_CLUSTER, Step.PREPARE_START_CLUSTER, [])
    prep_zones = b.fan("prepare_zone", Step.PREPARE_START_ZONE, [start], per_zone)
    w1 = b.add("wait:1", Step.WAIT, prep_zones)
    starts = b.fan("start_process", Step.START_PROCESS, [w1], per_server, process_timeout)
    w2 = b.add("wait:2", Step.WAIT, starts)
    upd_servers = b.fan("update_observer", Step.STARTED_OBSERVER, [w2], per_server)
    w3 = b.add("wait:3", Step.WAIT, upd_servers)
    upd_zones = b.fan("update_zone", Step.STARTED_ZONE, [w3], per_zone)
    b.add("update_cluster", Step.STARTED_CLUSTER, upd_zones)
    return b.nodes


def node_of(node: str, stage: str) -> str:
    """The node of another stage for the same server or zone: node_of("update_observer:3", "stop_process")."""
    _, _, idx = node.partition(":")
    return f"{stage}:{idx}"


def partial_context(
    kind: Partial,
    cluster: tuple[int, str, str],
    zone: tuple[str, str],
    server_ids: Sequence[int],
    targets: tuple[str, str],
    options: TaskOptions | None = None,
    server_id: int | None = None,
) -> dict[str, Any]:
    """OCP's context of a partial stop or start. cluster: (id, name, status); zone: (name, status);
    targets: the (cluster, zone) statuses it aims at. `partial` says what it means for the zones and
    servers held down on purpose (controller/states/intent.py)."""
    context = task_context(cluster[0], cluster[1], cluster[2], server_ids, [zone[0]], options)
    strings = context["stringMap"]
    strings.update(
        partial=str(kind),
        zone_name=zone[0],
        former_zone_status=zone[1],
        target_cluster_status=targets[0],
        target_zone_status=targets[1],
    )
    if server_id is not None:
        strings["server_id"] = str(server_id)
    return context


def build_zone_stop_dag(
    zone: tuple[str, str],
    servers: Sequence[tuple[int, str, str]],
    *,
    process_timeout: int,
    step_timeout: int,
    prepare_timeout: int,
    service_timeout: int,
) -> list[NodeSpec]:
    """zone: (name, status); servers: the zone's (id, zone, status)."""
    b = _Builder(step_timeout)
    (per_zone,), per_server = _per_zone([zone]), _per_server(servers)
    start = b.add(Node.PREPARE_CLUSTER, Step.PREPARE_ZONE_STOP, [], ctx=per_zone)
    service = b.add("stop_service", Step.STOP_ZONE_SERVICE, [start], ctx=per_zone, timeout=service_timeout)
    prep = b.fan("prepare_observer", Step.PREPARE_OBSERVER, [service], per_server, prepare_timeout)
    w1 = b.add("wait:1", Step.WAIT, prep)
    stops = b.fan("stop_process", Step.STOP_PROCESS, [w1], per_server, process_timeout)
    w2 = b.add("wait:2", Step.WAIT, stops)
    updates = b.fan("update_observer", Step.UPDATE_OBSERVER, [w2], per_server)
    w3 = b.add("wait:3", Step.WAIT, updates)
    upd_zone = b.add("update_zone", Step.UPDATE_ZONE, [w3], ctx=per_zone)
    b.add("update_cluster", Step.PARTIAL_CLUSTER, [upd_zone])
    return b.nodes


def build_zone_start_dag(
    zone: tuple[str, str],
    servers: Sequence[tuple[int, str, str]],
    *,
    process_timeout: int,
    step_timeout: int,
    service_timeout: int,
) -> list[NodeSpec]:
    b = _Builder(step_timeout)
    (per_zone,), per_server = _per_zone([zone]), _per_server(servers)
    start = b.add("prepare_zone", Step.PREPARE_START_ZONE, [], ctx=per_zone)
    starts = b.fan("start_process", Step.START_PROCESS, [start], per_server, process_timeout)
    w1 = b.add("wait:1", Step.WAIT, starts)
    service = b.add("start_service", Step.START_ZONE_SERVICE, [w1], ctx=per_zone, timeout=service_timeout)
    updates = b.fan("update_observer", Step.STARTED_OBSERVER, [service], per_server)
    w2 = b.add("wait:2", Step.WAIT, updates)
    upd_zone = b.add("update_zone", Step.STARTED_ZONE, [w2], ctx=per_zone)
    b.add("update_cluster", Step.PARTIAL_CLUSTER, [upd_zone])
    return b.nodes


def build_server_stop_dag(
    zone: tuple[str, str],
    server: tuple[int, str, str],
    *,
    process_timeout: int,
    step_timeout: int,
    prepare_timeout: int,
    service_timeout: int,
) -> list[NodeSpec]:
    b = _Builder(step_timeout)
    (per_zone,), per_server = _per_zone([zone]), _per_server([server])
    ctx = per_server[0] | per_zone
    start = b.add(Node.PREPARE_CLUSTER, Step.PREPARE_SERVER_STOP, [], ctx=ctx)
    service = b.add("stop_service", Step.STOP_SERVER_SERVICE, [start], ctx=ctx, timeout=service_timeout)
    prep = b.fan("prepare_observer", Step.PREPARE_OBSERVER, [service], per_server, prepare_timeout)
    stop = b.fan("stop_process", Step.STOP_PROCESS, prep, per_server, process_timeout)
    update = b.fan("update_observer", Step.UPDATE_OBSERVER, stop, per_server)
    upd_zone = b.add("update_zone", Step.PARTIAL_ZONE, update, ctx=per_zone)
    b.add("update_cluster", Step.PARTIAL_CLUSTER, [upd_zone])
    return b.nodes


def build_server_start_dag(
    zone: tuple[str, str],
    server: tuple[int, str, str],
    *,
    process_timeout: int,
    step_timeout: int,
    service_timeout: int,
) -> list[NodeSpec]:
    b = _Builder(step_timeout)
    (per_zone,), per_server = _per_zone([zone]), _per_server([server])
    start = b.fan("start_process", Step.START_PROCESS, [], per_server, process_timeout)
    ctx = per_server[0] | per_zone
    service = b.add("start_service", Step.START_SERVER_SERVICE, start, ctx=ctx, timeout=service_timeout)
    update = b.fan("update_observer", Step.STARTED_OBSERVER, [service], per_server)
    upd_zone = b.add("update_zone", Step.PARTIAL_ZONE, update, ctx=per_zone)
    b.add("update_cluster", Step.PARTIAL_CLUSTER, [upd_zone])
    return b.nodes
