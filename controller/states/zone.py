"""OB zone statuses."""

from __future__ import annotations

from enum import StrEnum

from obstop.controller.states.machine import Machine


class ZoneStatus(StrEnum):
    RUNNING = "RUNNING"
    STOPPING = "STOPPING"
    STOPPED = "STOPPED"
    STARTING = "STARTING"
    UNAVAILABLE = "UNAVAILABLE"  # its servers are neither all running nor all stopped


Z = ZoneStatus
TRANSITIONS: dict[ZoneStatus, frozenset[ZoneStatus]] = {
    Z.RUNNING: frozenset({Z.STOPPING, Z.STOPPED, Z.UNAVAILABLE}),
    Z.STOPPING: frozenset({Z.STOPPED, Z.RUNNING, Z.STARTING, Z.UNAVAILABLE}),
    Z.STOPPED: frozenset({Z.STARTING, Z.RUNNING, Z.UNAVAILABLE}),
    Z.STARTING: frozenset({Z.RUNNING, Z.STOPPED, Z.STOPPING, Z.UNAVAILABLE}),
    Z.UNAVAILABLE: frozenset({Z.STOPPING, Z.STARTING, Z.RUNNING, Z.STOPPED}),
}
MACHINE = Machine("zone", ZoneStatus, TRANSITIONS)

TRANSIENT = frozenset({Z.STOPPING, Z.STARTING})
