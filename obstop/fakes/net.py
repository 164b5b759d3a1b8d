"""Loopback addresses and ports for fakes, the demo and tests: one copy of each helper."""

from __future__ import annotations

import socket


def free_port(ip: str = "127.0.0.1") -> int:
    """A TCP port free on ip right now (the kernel picks it)."""
    with socket.socket() as s:
        s.bind((ip, 0))
        return int(s.getsockname()[1])


def bindable(ip: str, port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind((ip, port))
            return True
        except OSError:
            return False


def free_block(count: int, ports: tuple[int, ...] = (2881, 2882)) -> str:
    """The first 127.0.X.11 from which `count` addresses have all of `ports` free."""
    for third in range(0, 250):
        ips = [f"127.0.{third}.{11 + i}" for i in range(count)]
        if all(bindable(ip, p) for ip in ips for p in ports):
            return ips[0]
    raise RuntimeError("no free block of loopback addresses with ports 2881/2882 free")
