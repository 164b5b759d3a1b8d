"""OB zone statuses."""

from __future__ import annotations

from enum import StrEnum


class ZoneStatus(StrEnum):
    RUNNING = "RUNNING"
    STOPPING = "STOPPING"
    STOPPED = "STOPPED"
    STARTING = "STARTING"


TRANSITIONS: dict[ZoneStatus, frozenset[ZoneStatus]] = {
    ZoneStatus.RUNNING: frozenset({ZoneStatus.STOPPING}),
    ZoneStatus.STOPPING: frozenset({ZoneStatus.STOPPED, ZoneStatus.RUNNING}),
    ZoneStatus.STOPPED: frozenset({ZoneStatus.STARTING}),
    ZoneStatus.STARTING: frozenset({ZoneStatus.RUNNING, ZoneStatus.STOPPED}),
}
