"""The "Stop OB cluster" DAG, exactly as OCP builds it (see the seed), fanned out per zone and server:

Prepare stop cluster -> Prepare stop OB zone xZ -> Wait node -> Prepare stop observer xS -> Wait node ->
Stop observer process xS -> Wait node -> Update observer status xS -> Wait node -> Update zone status xZ ->
Update OB cluster status
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from obstop.controller.steps.run import TaskOptions

TASK_NAME = "Stop OB cluster"


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


NAMES: dict[Step, str] = {
    Step.PREPARE_CLUSTER: "Prepare stop cluster",
    Step.PREPARE_ZONE: "Prepare stop OB zone",
    Step.PREPARE_OBSERVER: "Prepare stop observer",
    Step.STOP_PROCESS: "Stop observer process",
    Step.UPDATE_OBSERVER: "Update observer status",
    Step.UPDATE_ZONE: "Update zone status",
    Step.UPDATE_CLUSTER: "Update OB cluster status",
    Step.WAIT: "Wait node",
}


def task_context(
    cluster_id: int,
    cluster_name: str,
    former_status: str,
    server_ids: Sequence[int],
    zone_names: Sequence[str],
    options: TaskOptions,
) -> dict[str, Any]:
    """The task context as OCP keeps it: a string map and a list map."""
    strings = {
        "cluster_name": cluster_name,
        "cluster_id": str(cluster_id),
        "former_cluster_status": former_status,
        **options.strings(),
    }
    return {
        "parallelIdx": -1,
        "stringMap": strings,
        "listMap": {"server_ids": [int(x) for x in server_ids], "zone_names": list(zone_names)},
    }


def build_stop_dag(
    zones: Sequence[str],
    servers: Sequence[tuple[int, str]],
    *,
    process_timeout: int,
    step_timeout: int,
    prepare_timeout: int | None = None,
) -> list[NodeSpec]:
    """servers: (server id, zone) pairs. Node keys are stable, so a (task, node) pair is unique."""
    nodes: list[NodeSpec] = []

    def add(
        node: str,
        step: Step,
        ups: Sequence[str],
        idx: int = -1,
        ctx: dict[str, Any] | None = None,
        timeout: int | None = None,
    ) -> str:
        nodes.append(
            NodeSpec(
                node=node,
                step=step,
                name=NAMES[step],
                description=NAMES[step],
                upstreams=tuple(ups),
                parallel_idx=idx,
                timeout=timeout or step_timeout,
                context=ctx or {},
            )
        )
        return node

    def fan(
        prefix: str,
        step: Step,
        ups: Sequence[str],
        items: Sequence[dict[str, Any]],
        timeout: int | None = None,
    ) -> list[str]:
        return [
            add(f"{prefix}:{i}", step, ups, i if len(items) > 1 else -1, item, timeout)
            for i, item in enumerate(items)
        ]

    per_zone = [{"zone_name": z} for z in zones]
    per_server = [{"server_id": sid, "zone_name": z} for sid, z in servers]
    start = add(Node.PREPARE_CLUSTER, Step.PREPARE_CLUSTER, [])
    prep_zones = fan("prepare_zone", Step.PREPARE_ZONE, [start], per_zone)
    w1 = add("wait:1", Step.WAIT, prep_zones)
    # each server's checkpoint wait runs in its Prepare stop observer: bounded by the freeze timeout
    prep_servers = fan(
        "prepare_observer", Step.PREPARE_OBSERVER, [w1], per_server, prepare_timeout or process_timeout
    )
    w2 = add("wait:2", Step.WAIT, prep_servers)
    stops = fan("stop_process", Step.STOP_PROCESS, [w2], per_server, process_timeout)
    w3 = add("wait:3", Step.WAIT, stops)
    upd_servers = fan("update_observer", Step.UPDATE_OBSERVER, [w3], per_server)
    w4 = add("wait:4", Step.WAIT, upd_servers)
    upd_zones = fan("update_zone", Step.UPDATE_ZONE, [w4], per_zone)
    add("update_cluster", Step.UPDATE_CLUSTER, upd_zones)
    return nodes
