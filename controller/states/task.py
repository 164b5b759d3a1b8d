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


T = TaskStatus
TRANSITIONS: dict[TaskStatus, frozenset[TaskStatus]] = {
    T.RUNNING: frozenset({T.FAILED, T.SUCCESSFUL}),
    T.FAILED: frozenset({T.RUNNING}),  # retry
    T.SUCCESSFUL: frozenset(),
}
MACHINE = Machine("task", TaskStatus, TRANSITIONS)
RESUME = MACHINE.edge(T.FAILED, T.RUNNING)


def derive(statuses: Iterable[SubtaskStatus]) -> TaskStatus:
    """SUCCESSFUL when all succeeded; FAILED when one failed and nothing can still run; else RUNNING."""
    seen = list(statuses)
    if all(s is SubtaskStatus.SUCCESSFUL for s in seen):
        return T.SUCCESSFUL
    if SubtaskStatus.FAILED in seen and not any(s in ACTIVE for s in seen):
        return T.FAILED
    return T.RUNNING
