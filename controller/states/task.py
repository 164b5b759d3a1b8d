"""Task states, derived from the subtasks as OCP does; never set by hand."""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum

from obstop.controller.states.machine import Machine
from obstop.controller.states.subtask import ACTIVE, SubtaskStatus


class TaskStatus(StrEnum):
    RUNNING = "RUNNING"
    FAILED = "FAILED"
    SUCCESSFUL = "SUCCESSFUL"


class TaskOperation(StrEnum):
    EXECUTE = "EXECUTE"
    RETRY = "RETRY"
    ROLLBACK = "ROLLBACK"


T = TaskStatus
TRANSITIONS: dict[TaskStatus, frozenset[TaskStatus]] = {
    T.RUNNING: frozenset({T.FAILED, T.SUCCESSFUL}),
    T.FAILED: frozenset({T.RUNNING}),  # retry, roll back, skip
    T.SUCCESSFUL: frozenset(),
}
MACHINE = Machine("task", TaskStatus, TRANSITIONS)
RESUME = MACHINE.edge(T.FAILED, T.RUNNING)


def derive(statuses: Iterable[SubtaskStatus], rolling_back: bool = False) -> TaskStatus:
    """RUNNING while anything can still run; else FAILED if one failed; else SUCCESSFUL when every
    subtask succeeded (or, rolling back, when every subtask is PENDING again)."""
    seen = list(statuses)
    if any(s in ACTIVE for s in seen):
        return T.RUNNING
    if SubtaskStatus.FAILED in seen:
        return T.FAILED
    done = SubtaskStatus.PENDING if rolling_back else SubtaskStatus.SUCCESSFUL
    if all(s is done for s in seen):
        return T.SUCCESSFUL
    return T.RUNNING
