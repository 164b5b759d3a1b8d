"""OB cluster statuses as OCP shows them, and the moves a stop, a start, their rollback and the
reconciliation with what the servers report make."""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum

from obstop.controller.states.machine import Machine
from obstop.controller.states.server import ServerStatus


class ClusterStatus(StrEnum):
    RUNNING = "RUNNING"
    STOPPING = "STOPPING"
    STOPPED = "STOPPED"
    STARTING = "STARTING"
    UNAVAILABLE = "UNAVAILABLE"  # some servers run, some do not (or nothing is known of them)


C = ClusterStatus
TRANSITIONS: dict[ClusterStatus, frozenset[ClusterStatus]] = {
    # a stop; a stop's rollback goes back (former status); observed: servers stopped outside obstop
    C.RUNNING: frozenset({C.STOPPING, C.STOPPED, C.UNAVAILABLE}),
    C.STOPPING: frozenset({C.STOPPED, C.RUNNING, C.STARTING, C.UNAVAILABLE}),
    C.STOPPED: frozenset({C.STARTING, C.RUNNING, C.UNAVAILABLE}),
    C.STARTING: frozenset({C.RUNNING, C.STOPPED, C.STOPPING, C.UNAVAILABLE}),
    C.UNAVAILABLE: frozenset({C.STOPPING, C.STARTING, C.RUNNING, C.STOPPED}),
}
MACHINE = Machine("cluster", ClusterStatus, TRANSITIONS)

STOPPABLE = frozenset({C.RUNNING, C.UNAVAILABLE})
STARTABLE = frozenset({C.STOPPED, C.UNAVAILABLE})
TRANSIENT = frozenset({C.STOPPING, C.STARTING})


def of_servers(statuses: Iterable[str]) -> ClusterStatus:
    """A zone's or a cluster's status as its servers say: all running, all stopped, or neither (the
    zone machine has the same three)."""
    seen = set(statuses)
    if seen == {ServerStatus.RUNNING}:
        return C.RUNNING
    if seen == {ServerStatus.PROCESS_STOPPED}:
        return C.STOPPED
    return C.UNAVAILABLE
