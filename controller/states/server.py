"""OB server (observer) statuses."""

from __future__ import annotations

from enum import StrEnum

from obstop.controller.states.machine import Machine


class ServerStatus(StrEnum):
    RUNNING = "RUNNING"
    PROCESS_STOPPING = "PROCESS_STOPPING"
    PROCESS_STOPPED = "PROCESS_STOPPED"
    STARTING = "STARTING"


V = ServerStatus
TRANSITIONS: dict[ServerStatus, frozenset[ServerStatus]] = {
    V.RUNNING: frozenset({V.PROCESS_STOPPING}),
    V.PROCESS_STOPPING: frozenset({V.PROCESS_STOPPED, V.RUNNING}),
    V.PROCESS_STOPPED: frozenset({V.STARTING}),
    V.STARTING: frozenset({V.RUNNING, V.PROCESS_STOPPED}),
}
MACHINE = Machine("server", ServerStatus, TRANSITIONS)
