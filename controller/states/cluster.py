"""OB cluster statuses as OCP shows them, and the moves a stop, a start or their rollback make."""

from __future__ import annotations

from enum import StrEnum

from obstop.controller.states.machine import Machine


class ClusterStatus(StrEnum):
    RUNNING = "RUNNING"
    STOPPING = "STOPPING"
    STOPPED = "STOPPED"
    STARTING = "STARTING"


C = ClusterStatus
TRANSITIONS: dict[ClusterStatus, frozenset[ClusterStatus]] = {
    C.RUNNING: frozenset({C.STOPPING}),
    C.STOPPING: frozenset({C.STOPPED, C.RUNNING}),
    C.STOPPED: frozenset({C.STARTING}),
    C.STARTING: frozenset({C.RUNNING, C.STOPPED}),
}
MACHINE = Machine("cluster", ClusterStatus, TRANSITIONS)

STOPPABLE = frozenset({C.RUNNING})
