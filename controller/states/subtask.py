"""Subtask states (OCP's): PENDING until its upstreams succeed, READY, RUNNING, then an end."""

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
    CANCEL = "CANCEL"


S = SubtaskStatus
TRANSITIONS: dict[SubtaskStatus, frozenset[SubtaskStatus]] = {
    S.PENDING: frozenset({S.READY}),
    S.READY: frozenset({S.RUNNING}),
    S.RUNNING: frozenset({S.SUCCESSFUL, S.FAILED, S.CANCELING}),
    S.CANCELING: frozenset({S.FAILED}),
    S.FAILED: frozenset({S.READY}),  # retry
    S.SUCCESSFUL: frozenset(),
}
MACHINE = Machine("subtask", SubtaskStatus, TRANSITIONS)

# the moves the engine makes, declared against the table (an illegal one fails at import)
PROMOTE = MACHINE.edge(S.PENDING, S.READY)
CLAIM = MACHINE.edge(S.READY, S.RUNNING)
SUCCEED = MACHINE.edge(S.RUNNING, S.SUCCESSFUL)
FAIL = MACHINE.edge(S.RUNNING, S.FAILED)
RETRY = MACHINE.edge(S.FAILED, S.READY)

ACTIVE = frozenset({S.READY, S.RUNNING, S.CANCELING})
