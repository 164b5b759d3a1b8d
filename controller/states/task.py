"""Task states, derived from the subtasks as OCP does; never set by hand."""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum

from obstop.controller.states.subtask import ACTIVE, SubtaskStatus


class TaskStatus(StrEnum):
    RUNNING = "RUNNING"
    FAILED = "FAILED"
    SUCCESSFUL = "SUCCESSFUL"


TRANSITIONS: dict[TaskStatus, frozenset[TaskStatus]] = {
    TaskStatus.RUNNING: frozenset({TaskStatus.FAILED, TaskStatus.SUCCESSFUL}),
    TaskStatus.FAILED: frozenset({TaskStatus.RUNNING}),  # retry
    TaskStatus.SUCCESSFUL: frozenset(),
}


def derive(statuses: Iterable[SubtaskStatus]) -> TaskStatus:
    """SUCCESSFUL when all succeeded; FAILED when one failed and nothing can still run; else RUNNING."""
    seen = list(statuses)
    if all(s is SubtaskStatus.SUCCESSFUL for s in seen):
        return TaskStatus.SUCCESSFUL
    if SubtaskStatus.FAILED in seen and not any(s in ACTIVE for s in seen):
        return TaskStatus.FAILED
    return TaskStatus.RUNNING
