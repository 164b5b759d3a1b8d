"""OB zone statuses."""

from __future__ import annotations

from enum import StrEnum

from obstop.controller.states.machine import Machine


class ZoneStatus(StrEnum):
    RUNNING = "RUNNING"
    STOPPING = "STOPPING"
    STOPPED = "STOPPED"
    STARTING = "STARTING"


Z = ZoneStatus
TRANSITIONS: dict[ZoneStatus, frozenset[ZoneStatus]] = {
    Z.RUNNING: frozenset({Z.STOPPING}),
    Z.STOPPING: frozenset({Z.STOPPED, Z.RUNNING}),
    Z.STOPPED: frozenset({Z.STARTING}),
    Z.STARTING: frozenset({Z.RUNNING, Z.STOPPED}),
}
MACHINE = Machine("zone", ZoneStatus, TRANSITIONS)
