"""The state machines' lifecycle rules, pure: task status derived from subtasks forward and rolling back,
every move the engine and operations make declared in the tables, statuses derived from servers."""

from __future__ import annotations

import pytest

from obstop.controller.states import IllegalTransition, cluster, server, subtask, task, zone
from obstop.controller.states.cluster import ClusterStatus, of_servers
from obstop.controller.states.subtask import SubtaskStatus as S
from obstop.controller.states.task import TaskStatus as T
from obstop.controller.states.task import derive


@pytest.mark.parametrize(
    ("statuses", "rolling_back", "wanted"),
    [
        ([S.SUCCESSFUL, S.SUCCESSFUL], False, T.SUCCESSFUL),
        ([S.SUCCESSFUL, S.FAILED, S.PENDING], False, T.FAILED),
        ([S.FAILED, S.RUNNING], False, T.RUNNING),  # another branch still runs
        ([S.FAILED, S.CANCELING], False, T.RUNNING),
        ([S.SUCCESSFUL, S.READY], False, T.RUNNING),
        ([S.PENDING, S.PENDING], True, T.SUCCESSFUL),  # rolled back: every subtask PENDING again
        ([S.SUCCESSFUL, S.PENDING], True, T.RUNNING),  # ... not yet
        ([S.SUCCESSFUL, S.FAILED, S.PENDING], True, T.FAILED),  # a rollback action failed
        ([S.SUCCESSFUL, S.READY], True, T.RUNNING),
    ],
)
def test_task_status_is_derived(statuses: list[S], rolling_back: bool, wanted: T) -> None:
    assert derive(statuses, rolling_back) is wanted


def test_the_moves_of_operations_are_in_the_subtask_table() -> None:
    m = subtask.MACHINE
    assert subtask.ROLLED_BACK == (S.RUNNING, S.PENDING)
    assert subtask.UNDO == (S.SUCCESSFUL, S.READY) and subtask.UNDO_FAILED == (S.FAILED, S.READY)
    assert subtask.CANCEL == (S.RUNNING, S.CANCELING) and subtask.CANCELLED == (S.CANCELING, S.FAILED)
    for illegal in [(S.PENDING, S.RUNNING), (S.CANCELING, S.SUCCESSFUL), (S.SUCCESSFUL, S.FAILED)]:
        with pytest.raises(IllegalTransition):
            m.check(*illegal)
    assert task.MACHINE.allows(T.FAILED, T.RUNNING) and not task.MACHINE.allows(T.SUCCESSFUL, T.RUNNING)


def test_every_observed_status_is_reachable_from_every_status() -> None:
    """The reconciler may find anything: each final status a report can lead to is a legal move."""
    for machine, finals in (
        (server.MACHINE, ["RUNNING", "PROCESS_STOPPED", "UNAVAILABLE"]),
        (zone.MACHINE, ["RUNNING", "STOPPED", "UNAVAILABLE"]),
        (cluster.MACHINE, ["RUNNING", "STOPPED", "UNAVAILABLE"]),
    ):
        for current in machine.states:
            for wanted in finals:
                machine.check(current, wanted)


def test_status_of_a_zone_or_cluster_follows_its_servers() -> None:
    assert of_servers(["RUNNING", "RUNNING"]) is ClusterStatus.RUNNING
    assert of_servers(["PROCESS_STOPPED"]) is ClusterStatus.STOPPED
    assert of_servers(["RUNNING", "PROCESS_STOPPED"]) is ClusterStatus.UNAVAILABLE
    assert of_servers(["STARTING", "RUNNING"]) is ClusterStatus.UNAVAILABLE
    assert {"RUNNING", "UNAVAILABLE"} == cluster.STOPPABLE and {"STOPPED", "UNAVAILABLE"} == cluster.STARTABLE
