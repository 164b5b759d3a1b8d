"""What an operator meant to be down: zones and servers stopped on purpose (a partial stop that
succeeded), so that statuses that follow the observers keep the cluster RUNNING around them (as OCP
shows it) without hiding an observer that died on its own.

A lifecycle task says what it means in its context (`stringMap.partial`, one of `Partial`); a task with
no such key acts on the whole cluster and clears every intent. Read from the SUCCESSFUL tasks of a
cluster in the order they ended (a rolled-back one undid itself and means nothing).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from obstop.controller.states.cluster import ClusterStatus, of_servers
from obstop.controller.states.server import ServerStatus


class Partial(StrEnum):
    STOP_ZONE = "STOP_ZONE"
    START_ZONE = "START_ZONE"
    STOP_SERVER = "STOP_SERVER"
    START_SERVER = "START_SERVER"


@dataclass
class HeldDown:
    """Zones (by name) and servers (by id) meant to be down."""

    zones: set[str] = field(default_factory=set)
    servers: set[int] = field(default_factory=set)

    def __bool__(self) -> bool:
        return bool(self.zones or self.servers)

    def covers(self, server_id: int, zone: str) -> bool:
        return zone in self.zones or server_id in self.servers

    def apply(self, context: Mapping[str, Any]) -> None:
        """One more ended task, later than those applied before."""
        strings = context.get("stringMap", {})
        lists = context.get("listMap", {})
        kind = strings.get("partial")
        zone = str(strings.get("zone_name", ""))
        servers = {int(s) for s in lists.get("server_ids", [])}
        match kind:
            case None:
                self.zones.clear()
                self.servers.clear()
            case Partial.STOP_ZONE:
                self.zones.add(zone)
            case Partial.START_ZONE:
                self.zones.discard(zone)
                self.servers -= servers
            case Partial.STOP_SERVER:
                self.servers |= servers
            case Partial.START_SERVER:
                self.servers -= servers


def held_down(contexts: Iterable[Mapping[str, Any]]) -> HeldDown:
    """From the contexts of a cluster's SUCCESSFUL tasks, oldest first."""
    held = HeldDown()
    for context in contexts:
        held.apply(context)
    return held


def resets(context: Mapping[str, Any]) -> bool:
    """A task on the whole cluster: nothing before it matters."""
    return "partial" not in context.get("stringMap", {})


def of_servers_held(servers: Iterable[tuple[str, bool]]) -> ClusterStatus:
    """A zone's or cluster's status from its servers' (status, meant to be down): as `of_servers`, except
    that it is RUNNING when every server not meant to be down runs (and one is)."""
    items = list(servers)
    everything = of_servers(status for status, _ in items)
    rest = [status for status, down in items if not down]
    if everything is ClusterStatus.UNAVAILABLE and rest and all(s == ServerStatus.RUNNING for s in rest):
        return ClusterStatus.RUNNING
    return everything
