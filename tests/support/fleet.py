"""Fleets of fake hosts (`obstop fakehosts up`: a fake observer and an agent process each) on a broker."""

from __future__ import annotations

import asyncio
import os
import signal
import time
import tomllib
from collections.abc import Callable
from pathlib import Path

import tomli_w

from obstop.fakes import hosts as fakehosts
from tests.support.fakes import fresh_block
from tests.support.processes import wait_dead


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

    def move_agent(self, fleet: fakehosts.Fleet, host: fakehosts.HostState, urls: list[str]) -> None:
        """Restart the host's agent (SIGTERM: a clean stop) with [mqtt] urls, e.g. a cluster's nodes."""
        assert host.agent_pid is not None and host.agent_config is not None
        os.kill(host.agent_pid, signal.SIGTERM)
        wait_dead(host.agent_pid)
        path = Path(host.agent_config)
        data = tomllib.loads(path.read_text())
        data["mqtt"]["urls"] = urls
        path.write_text(tomli_w.dumps(data))
        self.restart_agent(fleet, host)


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
