"""Subtask states (OCP's): PENDING until its upstreams succeed, READY, RUNNING, then an end."""

from __future__ import annotations

from enum import StrEnum


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


TRANSITIONS: dict[SubtaskStatus, frozenset[SubtaskStatus]] = {
    SubtaskStatus.PENDING: frozenset({SubtaskStatus.READY}),
    SubtaskStatus.READY: frozenset({SubtaskStatus.RUNNING}),
    SubtaskStatus.RUNNING: frozenset(
        {SubtaskStatus.SUCCESSFUL, SubtaskStatus.FAILED, SubtaskStatus.CANCELING}
    ),
    SubtaskStatus.CANCELING: frozenset({SubtaskStatus.FAILED}),
    SubtaskStatus.FAILED: frozenset({SubtaskStatus.READY}),  # retry
    SubtaskStatus.SUCCESSFUL: frozenset(),
}

ACTIVE = frozenset({SubtaskStatus.READY, SubtaskStatus.RUNNING, SubtaskStatus.CANCELING})
