"""OB server (observer) statuses."""

from __future__ import annotations

from enum import StrEnum


class ServerStatus(StrEnum):
    RUNNING = "RUNNING"
    PROCESS_STOPPING = "PROCESS_STOPPING"
    PROCESS_STOPPED = "PROCESS_STOPPED"
    STARTING = "STARTING"


TRANSITIONS: dict[ServerStatus, frozenset[ServerStatus]] = {
    ServerStatus.RUNNING: frozenset({ServerStatus.PROCESS_STOPPING}),
    ServerStatus.PROCESS_STOPPING: frozenset({ServerStatus.PROCESS_STOPPED, ServerStatus.RUNNING}),
    ServerStatus.PROCESS_STOPPED: frozenset({ServerStatus.STARTING}),
    ServerStatus.STARTING: frozenset({ServerStatus.RUNNING, ServerStatus.PROCESS_STOPPED}),
}
