"""OB cluster statuses as OCP shows them, and the moves a stop (or its rollback) makes."""

from __future__ import annotations

from enum import StrEnum


class ClusterStatus(StrEnum):
    RUNNING = "RUNNING"
    STOPPING = "STOPPING"
    STOPPED = "STOPPED"
    STARTING = "STARTING"


TRANSITIONS: dict[ClusterStatus, frozenset[ClusterStatus]] = {
    ClusterStatus.RUNNING: frozenset({ClusterStatus.STOPPING}),
    ClusterStatus.STOPPING: frozenset({ClusterStatus.STOPPED, ClusterStatus.RUNNING}),
    ClusterStatus.STOPPED: frozenset({ClusterStatus.STARTING}),
    ClusterStatus.STARTING: frozenset({ClusterStatus.RUNNING, ClusterStatus.STOPPED}),
}

STOPPABLE = frozenset({ClusterStatus.RUNNING})
