"""Fleets of fake hosts (`obstop fakehosts up`: a fake observer and an agent process each) on a broker."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

from obstop.fakes import hosts as fakehosts
from tests.support.fakes import fresh_block


class Fleets:
    """Brings fleets up under a test's temp dir; the fixture takes every one down at teardown."""

    def __init__(self, root: Path, broker_url: str) -> None:
        self.root, self.broker_url = root, broker_url
        self.dirs: list[Path] = []

    async def up(
        self, zones: int = 3, per_zone: int = 2, misbehave: dict[str, list[str]] | None = None
    ) -> fakehosts.Fleet:
        d = self.root / f"fleet{len(self.dirs) + 1}"
        self.dirs.append(d)
        return await asyncio.to_thread(
            fakehosts.up,
            d,
            zones=zones,
            servers_per_zone=per_zone,
            broker=self.broker_url,
            first_ip=fresh_block(zones * per_zone),
            misbehave=misbehave,
        )

    def down(self) -> None:
        for d in self.dirs:
            fakehosts.down(d)

    def restart_agent(self, fleet: fakehosts.Fleet, host: fakehosts.HostState) -> None:
        fakehosts.start_agent(host, host_dir(fleet, host), Path(fleet.dir) / "keys", self.broker_url)
        fleet.save()


def host_dir(fleet: fakehosts.Fleet, host: fakehosts.HostState) -> Path:
    return Path(fleet.dir) / "hosts" / host.host


def observer_log(host: fakehosts.HostState) -> str:
    return (Path(host.home) / "log" / "observer.log").read_text()


def agent_log(fleet: fakehosts.Fleet, host: fakehosts.HostState) -> str:
    return (host_dir(fleet, host) / "agent.log").read_text()


async def wait_for(cond: Callable[[], bool], what: str, timeout: float = 30) -> None:
    """Poll another process's state (a log file) in short bounded steps, without blocking the loop."""
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"{what} (after {timeout:g}s)"
        await asyncio.sleep(0.02)
