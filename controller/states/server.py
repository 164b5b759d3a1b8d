"""OB server (observer) statuses."""

from __future__ import annotations

from enum import StrEnum

from obstop.controller.states.machine import Machine


class ServerStatus(StrEnum):
    RUNNING = "RUNNING"
    PROCESS_STOPPING = "PROCESS_STOPPING"
    PROCESS_STOPPED = "PROCESS_STOPPED"
    STARTING = "STARTING"
    UNAVAILABLE = "UNAVAILABLE"  # a process runs but does not listen, or what runs is not provably it


V = ServerStatus
TRANSITIONS: dict[ServerStatus, frozenset[ServerStatus]] = {
    # a stop; observed: killed outside obstop, or stopped answering
    V.RUNNING: frozenset({V.PROCESS_STOPPING, V.PROCESS_STOPPED, V.UNAVAILABLE}),
    # stopped; a rollback back to its former status; settled after its task ended, unknown
    V.PROCESS_STOPPING: frozenset({V.PROCESS_STOPPED, V.RUNNING, V.STARTING, V.UNAVAILABLE}),
    # a start; observed: started outside obstop
    V.PROCESS_STOPPED: frozenset({V.STARTING, V.RUNNING, V.UNAVAILABLE}),
    # started; a start's rollback stops it again
    V.STARTING: frozenset({V.RUNNING, V.PROCESS_STOPPED, V.PROCESS_STOPPING, V.UNAVAILABLE}),
    V.UNAVAILABLE: frozenset({V.RUNNING, V.PROCESS_STOPPED, V.PROCESS_STOPPING, V.STARTING}),
}
MACHINE = Machine("server", ServerStatus, TRANSITIONS)

TRANSIENT = frozenset({V.PROCESS_STOPPING, V.STARTING})
