"""Fake observers for one test: each on its own loopback address, all killed at teardown."""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass, field
from pathlib import Path

from obstop.fakes.install import FakeObserver, start
from obstop.fakes.net import bindable

# each test gets its own 127.x.y.z so fake observers can all use ports 2881/2882
_ips = itertools.count((os.getpid() % 200) * 250 + 1)


def _ip(n: int) -> str:
    return f"127.{10 + (n // 62500) % 200}.{(n // 250) % 250 + 1}.{n % 250 + 1}"


def fresh_ip(ports: tuple[int, ...] = (2881, 2882)) -> str:
    """A loopback address no other fake of this test run has used (keyed by the pid, most likely none of
    another test run on this machine either: `free_block` always starts at 127.0.0.11) with `ports` free
    (a process another run left behind may hold them)."""
    while True:
        ip = _ip(next(_ips))
        if all(bindable(ip, p) for p in ports):
            return ip


def fresh_block(count: int, ports: tuple[int, ...] = (2881, 2882)) -> str:
    """The first of `count` consecutive fresh addresses (as `fakehosts up --first-ip` wants them), all with
    `ports` free."""
    while True:
        ns = [next(_ips) for _ in range(count)]
        ips = [_ip(n) for n in ns]
        same_net = len({ip.rsplit(".", 1)[0] for ip in ips}) == 1
        if (
            same_net
            and ns == list(range(ns[0], ns[0] + count))
            and all(bindable(ip, p) for ip in ips for p in ports)
        ):
            return ips[0]


class Fakes:
    """Starts fake observers under a test's temp dir (the `fakes` fixture kills what is left)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.count = 0

    def home(self) -> Path:
        self.count += 1
        return self.root / f"ob{self.count}"

    def start(
        self,
        *misbehave: str,
        home: Path | None = None,
        ip: str | None = None,
        ports: tuple[int, int] = (2881, 2882),
    ) -> tuple[FakeObserver, int]:
        """A fake observer listening on ip's SQL and RPC ports, and its pid once it is ready."""
        fake = FakeObserver(
            home or self.home(),
            ip or fresh_ip(ports),
            sql_port=ports[0],
            rpc_port=ports[1],
            misbehave=list(misbehave),
        )
        return fake, start(fake)


@dataclass
class Cluster:
    """The fake observers of one cluster, in inventory order."""

    fakes: list[FakeObserver] = field(default_factory=list)
    pids: list[int] = field(default_factory=list)

    def add(self, fake: FakeObserver, pid: int, zone: str) -> None:
        object.__setattr__(fake, "zone", zone)
        self.fakes.append(fake)
        self.pids.append(pid)


def start_cluster(
    fakes: Fakes, zones: int, per_zone: int, misbehave: dict[int, list[str]] | None = None
) -> Cluster:
    """zones x per_zone fake observers; misbehave maps a server's index to its fake's extra flags."""
    out = Cluster()
    n = 0
    for z in range(1, zones + 1):
        for _ in range(per_zone):
            fake, pid = fakes.start(*(misbehave or {}).get(n, []))
            out.add(fake, pid, f"zone{z}")
            n += 1
    return out
