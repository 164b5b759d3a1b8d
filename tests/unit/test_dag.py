"""The "Stop OB cluster" DAG as OCP builds it, its task context, and how the API prints a context."""

from __future__ import annotations

from collections import Counter

import pytest

from obstop.controller.steps.dag import (
    NAMES,
    PARTIAL_STEPS,
    START_TASK_NAME,
    TASK_NAME,
    NodeSpec,
    Step,
    build_start_dag,
    build_stop_dag,
    task_context,
)
from obstop.controller.steps.run import TaskOptions
from obstop.controller.views import context_string, page

ORDER = [
    "Prepare stop cluster",
    "Prepare stop OB zone",
    "Wait node",
    "Prepare stop observer",
    "Wait node",
    "Stop observer process",
    "Wait node",
    "Update observer status",
    "Wait node",
    "Update zone status",
    "Update OB cluster status",
]


def dag(zones: int, per_zone: int, **kw: int) -> list[NodeSpec]:
    names = [f"zone{z}" for z in range(1, zones + 1)]
    servers = [(100 + i, names[i // per_zone]) for i in range(zones * per_zone)]
    return build_stop_dag(names, servers, **{"process_timeout": 120, "step_timeout": 60, **kw})


def upstream_names(nodes: list[NodeSpec], node: NodeSpec) -> list[str]:
    by_key = {n.node: n for n in nodes}
    return sorted(by_key[u].name for u in node.upstreams)


def test_one_zone_one_server_is_the_seed_chain() -> None:
    nodes = dag(1, 1)
    chain = [nodes[0]]
    assert not nodes[0].upstreams
    while len(chain) < len(nodes):
        (nxt,) = [n for n in nodes if n.upstreams == (chain[-1].node,)]
        chain.append(nxt)
    assert [n.name for n in chain] == ORDER
    assert {n.parallel_idx for n in nodes} == {-1}  # nothing fans out
    assert all(n.description == n.name for n in nodes)


@pytest.mark.parametrize(("zones", "per_zone"), [(1, 1), (1, 3), (3, 1), (3, 2), (5, 4)])
def test_fan_out_counts_and_edges(zones: int, per_zone: int) -> None:
    nodes = dag(zones, per_zone)
    servers = zones * per_zone
    assert Counter(n.name for n in nodes) == {
        "Prepare stop cluster": 1,
        "Prepare stop OB zone": zones,
        "Wait node": 4,
        "Prepare stop observer": servers,
        "Stop observer process": servers,
        "Update observer status": servers,
        "Update zone status": zones,
        "Update OB cluster status": 1,
    }
    assert len({n.node for n in nodes}) == len(nodes)  # a node key is unique in its task
    for n in nodes:
        ups = upstream_names(nodes, n)
        match n.name:
            case "Prepare stop cluster":
                assert ups == []
            case "Prepare stop OB zone":
                assert ups == ["Prepare stop cluster"]
            case "Prepare stop observer" | "Stop observer process" | "Update observer status":
                assert ups == ["Wait node"]
            case "Update zone status":
                assert ups == ["Wait node"]
            case "Update OB cluster status":
                assert ups == ["Update zone status"] * zones
            case "Wait node":  # each wait joins one whole stage
                assert len(set(ups)) == 1 and len(ups) in (zones, servers)


def test_parallel_index_and_context_of_each_fanned_node() -> None:
    nodes = dag(2, 2)
    for name in ("Prepare stop observer", "Stop observer process", "Update observer status"):
        fanned = [n for n in nodes if n.name == name]
        assert sorted(n.parallel_idx for n in fanned) == [0, 1, 2, 3]
        assert sorted((n.context["server_id"], n.context["zone_name"]) for n in fanned) == [
            (100, "zone1"),
            (101, "zone1"),
            (102, "zone2"),
            (103, "zone2"),
        ]
    zones = [n for n in nodes if n.name == "Prepare stop OB zone"]
    assert [(n.parallel_idx, n.context) for n in zones] == [
        (0, {"zone_name": "zone1"}),
        (1, {"zone_name": "zone2"}),
    ]
    assert {n.parallel_idx for n in nodes if n.name in ("Wait node", "Prepare stop cluster")} == {-1}


def test_timeouts_per_step() -> None:
    nodes = dag(2, 1, process_timeout=120, step_timeout=60, prepare_timeout=600)
    timeouts = {n.name: n.timeout for n in nodes}
    assert timeouts["Prepare stop observer"] == 600  # bounds the checkpoint wait (the freeze timeout)
    assert timeouts["Stop observer process"] == 120
    assert {
        timeouts[name] for name in ORDER if name not in ("Prepare stop observer", "Stop observer process")
    } == {60}
    assert {n.timeout for n in dag(1, 1) if n.name == "Prepare stop observer"} == {120}


def test_steps_and_names() -> None:
    stop = dag(1, 1)
    start = build_start_dag(["zone1"], [(100, "zone1")], process_timeout=180, step_timeout=60)
    stop_steps, start_steps = {n.step for n in stop}, {n.step for n in start}
    # every step belongs to a DAG (the partial stops' own: tests/unit/test_partial.py), and the two DAGs
    # share only the Wait node
    assert stop_steps | start_steps == set(Step) - PARTIAL_STEPS and stop_steps & start_steps == {Step.WAIT}
    assert all(NAMES[Step(n.step)] == n.name for n in stop + start)
    assert (TASK_NAME, START_TASK_NAME) == ("Stop OB cluster", "Start OB cluster")


def test_task_context_as_ocp_prints_it() -> None:
    ctx = task_context(1, "obcluster", "RUNNING", [100], ["zone1"], TaskOptions())
    assert context_string(ctx) == (
        "Context(parallelIdx=-1, stringMap={cluster_name=obcluster, cluster_id=1, former_cluster_status=RUNNING, "
        "prohibit_rollback=false, freeze=true, freeze_timeout_seconds=600, force=false}, listMap={server_ids=[100], zone_names=[zone1]})"
    )
    opts = TaskOptions(freeze=False, freeze_timeout_seconds=30, force=True)
    ctx = task_context(7, "c", "RUNNING", [1, 2], ["z1", "z2"], opts)
    assert ctx["listMap"] == {"server_ids": [1, 2], "zone_names": ["z1", "z2"]}
    assert TaskOptions.of(ctx) == opts  # the options read back from the stored context
    assert TaskOptions.of({}) == TaskOptions()


def test_context_string_of_a_subtask() -> None:
    assert context_string({}, 3) == "Context(parallelIdx=3, stringMap={}, listMap={})"
    assert context_string({"stringMap": {"zone_name": "z1"}, "listMap": {"ids": [1, 2]}}, -1) == (
        "Context(parallelIdx=-1, stringMap={zone_name=z1}, listMap={ids=[1, 2]})"
    )


@pytest.mark.parametrize(
    ("number", "size", "total", "pages"), [(0, 10, 0, 0), (0, 10, 10, 1), (1, 10, 11, 2), (0, 0, 5, 0)]
)
def test_page(number: int, size: int, total: int, pages: int) -> None:
    assert page(number, size, total) == {
        "number": number,
        "size": size,
        "totalElements": total,
        "totalPages": pages,
    }
