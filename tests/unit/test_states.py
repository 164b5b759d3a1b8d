"""The five state machines: the tables are the only source of legal moves, and code declares the moves it
makes against them."""

from __future__ import annotations

import itertools
from enum import StrEnum
from types import ModuleType

import pytest

from obstop.controller.states import IllegalTransition, Machine, cluster, server, subtask, task, zone
from obstop.controller.states.subtask import SubtaskStatus as S
from obstop.controller.states.task import TaskStatus as T
from obstop.controller.states.task import derive

MODULES = [cluster, zone, server, task, subtask]


def declared_edges(module: ModuleType) -> dict[str, tuple[StrEnum, StrEnum]]:
    """The module's named moves (CLAIM = MACHINE.edge(READY, RUNNING), ...)."""
    return {
        name: value
        for name, value in vars(module).items()
        if isinstance(value, tuple)
        and len(value) == 2
        and all(isinstance(v, module.MACHINE.states) for v in value)
    }


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.__name__.rsplit(".", 1)[1])
def test_every_state_has_a_row_and_the_machine_is_its_table(module: ModuleType) -> None:
    machine: Machine = module.MACHINE
    assert set(module.TRANSITIONS) == set(machine.states)
    assert machine.transitions == module.TRANSITIONS
    for targets in module.TRANSITIONS.values():
        assert targets <= set(machine.states)


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.__name__.rsplit(".", 1)[1])
def test_declared_edges_are_in_the_table(module: ModuleType) -> None:
    for name, (a, b) in declared_edges(module).items():
        assert b in module.TRANSITIONS[a], f"{module.__name__}.{name}: {a} -> {b}"


def test_the_engine_declares_its_subtask_and_task_moves() -> None:
    assert declared_edges(subtask) == {
        "PROMOTE": (S.PENDING, S.READY),
        "CLAIM": (S.READY, S.RUNNING),
        "SUCCEED": (S.RUNNING, S.SUCCESSFUL),
        "FAIL": (S.RUNNING, S.FAILED),
        "RETRY": (S.FAILED, S.READY),
        "SKIP": (S.FAILED, S.READY),
        "CANCEL": (S.RUNNING, S.CANCELING),
        "CANCELLED": (S.CANCELING, S.FAILED),
        "ROLLED_BACK": (S.RUNNING, S.PENDING),  # a rollback action done: the subtask is as never run
        "UNDO": (S.SUCCESSFUL, S.READY),
        "UNDO_FAILED": (S.FAILED, S.READY),
    }
    assert declared_edges(task) == {"RESUME": (T.FAILED, T.RUNNING)}


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.__name__.rsplit(".", 1)[1])
def test_each_move_is_allowed_exactly_when_the_table_has_it(module: ModuleType) -> None:
    machine: Machine = module.MACHINE
    for a, b in itertools.permutations(machine.states, 2):
        if b in module.TRANSITIONS[a]:
            machine.check(a, b)
            assert machine.edge(a, b) == (a, b)
            continue
        with pytest.raises(IllegalTransition, match=f"cannot go from {a} to {b}") as err:
            machine.check(a, b, f"{machine.name} 7")
        assert str(err.value).startswith(f"{machine.name} 7 ") and (err.value.current, err.value.wanted) == (
            a,
            b,
        )
        with pytest.raises(IllegalTransition):
            machine.edge(a, b)


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.__name__.rsplit(".", 1)[1])
def test_staying_put_is_no_move(module: ModuleType) -> None:
    for state in module.MACHINE.states:
        module.MACHINE.check(state, state)  # even in a terminal state
        module.MACHINE.check(str(state), str(state))


def test_check_takes_the_stored_strings_and_refuses_unknown_ones() -> None:
    cluster.MACHINE.check("RUNNING", "STOPPING")
    with pytest.raises(IllegalTransition, match="cluster cannot go from RUNNING to STARTING"):
        cluster.MACHINE.check("RUNNING", "STARTING")  # a running cluster is never started
    with pytest.raises(ValueError):
        cluster.MACHINE.check("RUNNING", "EXPLODED")


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.__name__.rsplit(".", 1)[1])
def test_sources_are_the_states_a_move_may_come_from(module: ModuleType) -> None:
    for wanted in module.MACHINE.states:
        expected = {a for a, targets in module.TRANSITIONS.items() if wanted in targets}
        assert module.MACHINE.sources(wanted) == expected


def test_sources_and_terminal_states() -> None:
    # promoted; retried or skipped; rolled back
    assert subtask.MACHINE.sources(S.READY) == {S.PENDING, S.FAILED, S.SUCCESSFUL}
    assert subtask.MACHINE.sources(S.FAILED) == {S.RUNNING, S.CANCELING}
    C = cluster.ClusterStatus
    # a stop ends; a start is rolled back; observed: every server stopped outside obstop
    assert cluster.MACHINE.sources(C.STOPPED) == {C.STOPPING, C.STARTING, C.RUNNING, C.UNAVAILABLE}
    assert subtask.MACHINE.terminal() == set()  # an ended subtask can still be retried or rolled back
    assert task.MACHINE.terminal() == {T.SUCCESSFUL}  # a FAILED task can be retried
    for m in (cluster, zone, server):
        assert m.MACHINE.terminal() == set()


def test_stop_and_its_rollback_for_cluster_zone_and_server() -> None:
    C, Z, V = cluster.ClusterStatus, zone.ZoneStatus, server.ServerStatus
    for machine, running, stopping, stopped in (
        (cluster.MACHINE, C.RUNNING, C.STOPPING, C.STOPPED),
        (zone.MACHINE, Z.RUNNING, Z.STOPPING, Z.STOPPED),
        (server.MACHINE, V.RUNNING, V.PROCESS_STOPPING, V.PROCESS_STOPPED),
    ):
        assert machine.allows(running, stopping) and machine.allows(stopping, stopped)
        assert machine.allows(stopping, running)  # a failed stop rolls back
        assert machine.allows(running, stopped)  # observed: stopped outside obstop (no task holds it)
    assert set(cluster.STOPPABLE) == {C.RUNNING, C.UNAVAILABLE}
    assert set(cluster.STARTABLE) == {C.STOPPED, C.UNAVAILABLE}


def test_a_machine_needs_a_row_for_every_state() -> None:
    class Light(StrEnum):
        ON = "ON"
        OFF = "OFF"

    with pytest.raises(ValueError, match=r"light: no row for .*OFF"):
        Machine("light", Light, {Light.ON: frozenset({Light.OFF})})


@pytest.mark.parametrize(
    ("subtasks", "expected"),
    [
        ([S.SUCCESSFUL, S.SUCCESSFUL], T.SUCCESSFUL),
        ([S.SUCCESSFUL, S.RUNNING], T.RUNNING),
        ([S.PENDING, S.PENDING], T.RUNNING),
        ([S.SUCCESSFUL, S.PENDING], T.RUNNING),
        ([S.FAILED, S.RUNNING], T.RUNNING),  # another branch still runs
        ([S.FAILED, S.READY], T.RUNNING),
        ([S.FAILED, S.CANCELING], T.RUNNING),
        ([S.FAILED, S.PENDING], T.FAILED),  # what waits on the failure can never run
        ([S.SUCCESSFUL, S.FAILED], T.FAILED),
        ([S.FAILED], T.FAILED),
    ],
)
def test_task_status_is_derived_from_its_subtasks(subtasks: list[S], expected: T) -> None:
    assert derive(subtasks) is expected
    assert derive(iter(subtasks)) is expected  # any iterable, read once
