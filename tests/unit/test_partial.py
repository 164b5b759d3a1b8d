"""Partial stops, pure: the four DAGs and their contexts, the majority check's arithmetic, which zones and
servers are down on purpose (and the statuses that follow), and the fake cluster's log streams."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from obstop.controller.states.intent import HeldDown, Partial, held_down, of_servers_held, resets
from obstop.controller.steps.dag import (
    NAMES,
    PARTIAL_STEPS,
    PARTIAL_TASK_NAMES,
    NodeSpec,
    Step,
    build_server_start_dag,
    build_server_stop_dag,
    build_zone_start_dag,
    build_zone_stop_dag,
    partial_context,
)
from obstop.controller.steps.majority import Replica, evaluate
from obstop.controller.steps.run import TaskOptions
from obstop.controller.views import context_string
from obstop.fakes.cluster import FakeCluster
from obstop.fakes.logstreams import elect, layout, loss

T = {"process_timeout": 120, "step_timeout": 60, "service_timeout": 630}
ZONE = ("zone1", "RUNNING")
SERVERS = [(100, "zone1", "RUNNING"), (101, "zone1", "RUNNING")]


def chain(nodes: list[NodeSpec]) -> list[str]:
    """The names stage by stage (a fanned stage once), following the edges from the source."""
    by_key = {n.node: n for n in nodes}
    (first,) = [n for n in nodes if not n.upstreams]
    names, stage = [first.name], [first]
    while True:
        keys = {n.node for n in stage}
        stage = [n for n in nodes if set(n.upstreams) & keys]
        if not stage:
            return names
        assert len({n.name for n in stage}) == 1, [n.name for n in stage]
        assert all(set(n.upstreams) <= set(by_key) for n in stage)
        names.append(stage[0].name)


def test_the_four_dags_in_the_seeds_style() -> None:
    stop_zone = build_zone_stop_dag(ZONE, SERVERS, prepare_timeout=600, **T)
    assert chain(stop_zone) == [
        "Prepare stop OB zone",
        "Stop OB zone service",
        "Prepare stop observer",
        "Wait node",
        "Stop observer process",
        "Wait node",
        "Update observer status",
        "Wait node",
        "Update zone status",
        "Update OB cluster status",
    ]
    start_zone = build_zone_start_dag(ZONE, SERVERS, **T)
    assert chain(start_zone) == [
        "Prepare start OB zone",
        "Start observer process",
        "Wait node",
        "Start OB zone service",
        "Update observer status",
        "Wait node",
        "Update zone status",
        "Update OB cluster status",
    ]
    stop_server = build_server_stop_dag(ZONE, SERVERS[1], prepare_timeout=600, **T)
    assert chain(stop_server) == [
        "Prepare stop OB server",
        "Stop OB server service",
        "Prepare stop observer",
        "Stop observer process",
        "Update observer status",
        "Update zone status",
        "Update OB cluster status",
    ]
    start_server = build_server_start_dag(ZONE, SERVERS[1], **T)
    assert chain(start_server) == [
        "Start observer process",
        "Start OB server service",
        "Update observer status",
        "Update zone status",
        "Update OB cluster status",
    ]
    every = stop_zone + start_zone + stop_server + start_server
    assert all(NAMES[Step(n.step)] == n.name for n in every)
    assert {Step(n.step) for n in every} >= PARTIAL_STEPS
    # the process steps are those of the whole-cluster DAGs: the same node keys, the server's context
    for dag in (stop_zone, start_zone, stop_server, start_server):
        assert len({n.node for n in dag}) == len(dag)
    (stop,) = [n for n in stop_server if n.name == "Stop observer process"]
    assert stop.node == "stop_process:0" and stop.context["server_id"] == 101 and stop.timeout == 120
    (service,) = [n for n in stop_zone if n.name == "Stop OB zone service"]
    assert service.timeout == 630 and service.context == {
        "zone_name": "zone1",
        "former_zone_status": "RUNNING",
    }
    assert stop_zone[0].node == "prepare_cluster"  # the node the freeze waits read
    assert {n.context["server_id"] for n in stop_zone if n.name == "Prepare stop observer"} == {100, 101}
    assert PARTIAL_TASK_NAMES == {
        Partial.STOP_ZONE: "Stop OB zone",
        Partial.START_ZONE: "Start OB zone",
        Partial.STOP_SERVER: "Stop OB server",
        Partial.START_SERVER: "Start OB server",
    }


def test_the_context_as_ocp_keeps_it() -> None:
    ctx = partial_context(
        Partial.STOP_SERVER,
        (1, "obcluster", "RUNNING"),
        ZONE,
        [101],
        ("RUNNING", "RUNNING"),
        TaskOptions(force=True),
        server_id=101,
    )
    assert context_string(ctx) == (
        "Context(parallelIdx=-1, stringMap={cluster_name=obcluster, cluster_id=1, former_cluster_status=RUNNING, "
        "prohibit_rollback=false, freeze=true, freeze_timeout_seconds=600, force=true, partial=STOP_SERVER, "
        "zone_name=zone1, former_zone_status=RUNNING, target_cluster_status=RUNNING, target_zone_status=RUNNING, "
        "server_id=101}, listMap={server_ids=[101], zone_names=[zone1]})"
    )
    assert TaskOptions.of(ctx).force and not resets(ctx)


def replicas(stream: tuple[int, int], members: list[str], rows: dict[str, tuple[str, str]]) -> list[Replica]:
    """rows: server -> (role, in_sync) of the servers that answer."""
    listed = ",".join(f"{m}:1" for m in members)
    return [
        Replica.of_row((stream[0], stream[1], *key.split(":"), role, listed, len(members), sync))
        for key, (role, sync) in rows.items()
    ]


A, B, C, D, E = (f"10.0.0.{i}:2882" for i in range(1, 6))


def test_a_zone_of_three_may_stop_and_a_second_may_not() -> None:
    up = {A: ("LEADER", "YES"), B: ("FOLLOWER", "YES"), C: ("FOLLOWER", "YES")}
    rows = replicas((1, 1), [A, B, C], up) + replicas((1002, 1001), [A, B, C], up)
    verdict = evaluate(rows, {A}, tenants={1: "sys", 1002: "app"})
    assert verdict.checked == 2 and verdict.losses == []
    # A is down now (no row, and the controller knows it stopped): B would leave one of three
    down = replicas((1, 1), [A, B, C], {B: ("LEADER", "YES"), C: ("FOLLOWER", "YES")})
    verdict = evaluate(down, {B}, stopped={A}, tenants={1: "sys"})
    (lost,) = verdict.losses
    assert lost.describe() == (
        "tenant sys (1) log stream 1 would keep 1 of 3 replicas in sync (10.0.0.3:2882); a majority is 2"
    )
    assert verdict.refusal("stopping zone z2").startswith("stopping zone z2 would lose the majority of 1 ")


def test_what_counts_as_in_sync() -> None:
    members = [A, B, C, D, E]
    lagging = replicas(
        (1, 1),
        members,
        {A: ("LEADER", "YES"), B: ("FOLLOWER", "YES"), C: ("FOLLOWER", "NO"), D: ("FOLLOWER", "YES")},
    )
    # five replicas, E silent (dead), C lagging: stopping A and B leaves D alone in sync
    assert [x.in_sync_outside for x in evaluate(lagging, {A, B}).losses] == [(D,)]
    # stopping B leaves A and D in sync: C lags, so 2 of 5 is no majority
    assert [x.in_sync_outside for x in evaluate(lagging, {B}).losses] == [(A, D)]
    caught_up = [r if r.server != C else Replica(1, 1, C, False, r.members, 5, True) for r in lagging]
    assert evaluate(caught_up, {B}).losses == []
    # a server the controller knows stopped never counts, whatever a stale row says
    assert evaluate(caught_up, {B}, stopped={D}).losses != []
    # streams without a replica on the servers stopped are not checked
    assert evaluate(lagging, {"10.9.9.9:2882"}).checked == 0
    # a stream that has lost its leader (no majority already) is refused
    leaderless = replicas((1, 1), [A, B, C], {B: ("FOLLOWER", "NO"), C: ("FOLLOWER", "NO")})
    assert evaluate(leaderless, {C}).losses and evaluate(leaderless, {A}).losses


def test_held_down_follows_the_tasks_that_succeeded() -> None:
    def ctx(kind: Partial | None, zone: str = "", servers: tuple[int, ...] = ()) -> dict[str, object]:
        strings = {"zone_name": zone} | ({"partial": str(kind)} if kind else {})
        return {"stringMap": strings, "listMap": {"server_ids": list(servers)}}

    held = held_down(
        [
            ctx(Partial.STOP_ZONE, "z1", (1, 2)),
            ctx(Partial.STOP_SERVER, "z2", (3,)),
            ctx(Partial.STOP_SERVER, "z3", (5,)),
            ctx(Partial.START_SERVER, "z3", (5,)),
        ]
    )
    assert (held.zones, held.servers) == ({"z1"}, {3})
    assert held.covers(1, "z1") and held.covers(3, "z2") and not held.covers(4, "z2")
    held.apply(ctx(Partial.START_ZONE, "z1", (1, 2)))
    assert (held.zones, held.servers) == (set(), {3})
    held.apply(ctx(None))  # a task on the whole cluster
    assert not held and held == HeldDown()


@pytest.mark.parametrize(
    ("servers", "wanted"),
    [
        ([("RUNNING", False), ("PROCESS_STOPPED", True)], "RUNNING"),  # a server down on purpose
        ([("PROCESS_STOPPED", True), ("PROCESS_STOPPED", False)], "STOPPED"),
        ([("RUNNING", False), ("PROCESS_STOPPED", False)], "UNAVAILABLE"),  # one died on its own
        ([("PROCESS_STOPPED", True), ("PROCESS_STOPPED", True)], "STOPPED"),  # a zone down on purpose
        ([("RUNNING", True), ("PROCESS_STOPPED", True)], "UNAVAILABLE"),  # half of it started again
        ([("RUNNING", False), ("UNAVAILABLE", False), ("PROCESS_STOPPED", True)], "UNAVAILABLE"),
        ([("RUNNING", False), ("RUNNING", True)], "RUNNING"),
    ],
)
def test_statuses_around_what_is_down_on_purpose(servers: list[tuple[str, bool]], wanted: str) -> None:
    assert of_servers_held(servers) == wanted


def test_fake_log_streams_elect_only_with_a_majority(tmp_path: Path) -> None:
    fc = FakeCluster.create(tmp_path / "cluster")
    dead = 2**31 - 1  # no such process
    for i, pid in enumerate((os.getpid(), os.getppid(), 1)):
        fc.register(f"10.0.0.{i + 1}", 2882, 2881, f"zone{i + 1}", pid=pid)
    rows = fc.log_stat()
    streams = {(r.tenant_id, r.ls_id) for r in rows}
    assert len(streams) == 6 and len(rows) == 18 and {r.in_sync for r in rows} == {"YES"}
    assert len({(r.tenant_id, r.ls_id) for r in rows if r.role == "LEADER"}) == 6
    assert len({r.svr_ip for r in rows if r.role == "LEADER"}) == 3  # leaders spread over the zones
    assert fc.majority_loss({A}) is None

    fc.stop_zone("zone1")  # leaders move away from a stopped zone
    assert not [r for r in fc.log_stat() if r.role == "LEADER" and r.svr_ip == "10.0.0.1"]
    fc.register("10.0.0.1", 2882, 2881, "zone1", pid=dead)  # ...and its observer stops
    assert fc.majority_loss({B}) == "log stream 1 of tenant 1 would keep 1 of 3 replicas"
    fc.register("10.0.0.2", 2882, 2881, "zone2", pid=dead)  # a second zone gone: no election can succeed
    rows = fc.log_stat()
    assert {r.svr_ip for r in rows} == {"10.0.0.3"} and {(r.role, r.in_sync) for r in rows} == {
        ("FOLLOWER", "NO")
    }


def test_fake_layout_spreads_replicas_one_per_zone() -> None:
    servers = [(f"10.0.{z}.{i}:2882", f"zone{z}") for z in (1, 2, 3) for i in (1, 2)]
    streams = layout(servers)
    assert all(len(s.members) == 3 and len({m.split(".")[2] for m in s.members}) == 3 for s in streams)
    assert {m for s in streams for m in s.members} == {key for key, _ in servers}  # every server holds some
    s = streams[0]
    assert elect(s, "", live=set(s.members), serving=set(s.members)) == s.by_preference()[0]
    assert elect(s, "", live={s.members[0]}, serving={s.members[0]}) == ""
    assert loss(streams, {s.members[0]}, up=set(s.members[1:])) is None
