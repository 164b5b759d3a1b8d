"""Subtask states (OCP's): PENDING until its upstreams succeed, READY, RUNNING, then an end.

A rollback walks the DAG backwards: a SUCCESSFUL or FAILED subtask becomes READY again (operation
ROLLBACK) once all its downstreams are PENDING, runs its rollback action, and ends PENDING.
"""

from __future__ import annotations

from enum import StrEnum

from obstop.controller.states.machine import Machine


class SubtaskStatus(StrEnum):
    PENDING = "PENDING"
    READY = "READY"
    RUNNING = "RUNNING"
    CANCELING = "CANCELING"
    FAILED = "FAILED"
    SUCCESSFUL = "SUCCESSFUL"


class Operation(StrEnum):
    EXECUTE = "EXECUTE"
    RETRY = "RETRY"
    ROLLBACK = "ROLLBACK"
    SKIP = "SKIP"
    ROLLBACK_SKIP = "ROLLBACK_SKIP"
    CANCEL = "CANCEL"


BACKWARD = frozenset({Operation.ROLLBACK, Operation.ROLLBACK_SKIP})
"""Operations of a subtask being rolled back: it ends PENDING, and its upstreams follow."""
SKIPPED = frozenset({Operation.SKIP, Operation.ROLLBACK_SKIP})
"""Operations the engine completes without running the step."""

S = SubtaskStatus
TRANSITIONS: dict[SubtaskStatus, frozenset[SubtaskStatus]] = {
    S.PENDING: frozenset({S.READY}),
    S.READY: frozenset({S.RUNNING}),
    S.RUNNING: frozenset({S.SUCCESSFUL, S.FAILED, S.CANCELING, S.PENDING}),
    S.CANCELING: frozenset({S.FAILED}),
    S.FAILED: frozenset({S.READY}),  # retry, skip, or roll it back
    S.SUCCESSFUL: frozenset({S.READY}),  # roll it back
}
MACHINE = Machine("subtask", SubtaskStatus, TRANSITIONS)

# the moves the engine and the operations make, declared against the table (an illegal one fails at import)
PROMOTE = MACHINE.edge(S.PENDING, S.READY)
CLAIM = MACHINE.edge(S.READY, S.RUNNING)
SUCCEED = MACHINE.edge(S.RUNNING, S.SUCCESSFUL)
FAIL = MACHINE.edge(S.RUNNING, S.FAILED)
RETRY = MACHINE.edge(S.FAILED, S.READY)
SKIP = MACHINE.edge(S.FAILED, S.READY)
CANCEL = MACHINE.edge(S.RUNNING, S.CANCELING)
CANCELLED = MACHINE.edge(S.CANCELING, S.FAILED)
ROLLED_BACK = MACHINE.edge(S.RUNNING, S.PENDING)
UNDO = MACHINE.edge(S.SUCCESSFUL, S.READY)
UNDO_FAILED = MACHINE.edge(S.FAILED, S.READY)

ACTIVE = frozenset({S.READY, S.RUNNING, S.CANCELING})
