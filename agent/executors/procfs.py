"""Parsers for the /proc texts both executors read (locally, or `cat` over SSH)."""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterable

from obstop.agent.executors.host import Listener

_LISTEN = "0A"
WILDCARDS = frozenset({"0.0.0.0", "::"})


@functools.lru_cache(maxsize=4096)  # a host's tables repeat the same few addresses poll after poll
def _hex_ip(text: str) -> str:
    raw = bytes.fromhex(text)
    if len(raw) == 4:
        return str(ipaddress.IPv4Address(raw[::-1]))
    # /proc/net/tcp6 prints four 32-bit words, each in host (little-endian) order
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
    addr = ipaddress.IPv6Address(words)
    return str(addr.ipv4_mapped) if addr.ipv4_mapped else str(addr)


def parse_net_tcp(text: str) -> list[Listener]:
    """LISTEN sockets of /proc/net/tcp and tcp6 (their texts may be concatenated)."""
    out: list[Listener] = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 10 or parts[0] == "sl" or parts[3] != _LISTEN:
            continue
        try:
            ip_hex, port_hex = parts[1].split(":")
            out.append(Listener(_hex_ip(ip_hex), int(port_hex, 16), int(parts[9])))
        except ValueError:
            continue
    return out


def table_addresses(ip: str) -> list[str]:
    """How /proc/net/tcp and tcp6 spell ip (the inverse of _hex_ip): an IPv4 address also as ::ffff:ip."""
    addr = ipaddress.ip_address(ip)
    forms = []
    if addr.version == 4:
        forms.append(addr.packed[::-1].hex().upper())
        addr = ipaddress.IPv6Address(b"\0" * 10 + b"\xff\xff" + addr.packed)
    raw = addr.packed
    forms.append(b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4)).hex().upper())
    return forms


def table_keys(addresses: list[str], ports: tuple[int, ...]) -> list[str]:
    """The local-address keys (ADDR:PORT, as the kernel's tables print them) on_address would match for
    these addresses; '*:PORT' for any address (a wildcard target)."""
    if any(a in WILDCARDS for a in addresses):
        return [f"*:{p:04X}" for p in ports]
    ips = sorted({f for a in [*addresses, *WILDCARDS] for f in table_addresses(a)})
    return [f"{ip}:{p:04X}" for ip in ips for p in ports]


def on_address(listeners: list[Listener], ip: str, ports: tuple[int, ...]) -> list[Listener]:
    """Listeners on these ports that bind ip; a wildcard on either side matches any address."""
    return [x for x in listeners if x.port in ports and (ip in WILDCARDS or x.ip == ip or x.ip in WILDCARDS)]


def listens_on(pairs: Iterable[tuple[str, int]], ip: str, ports: tuple[int, ...]) -> bool:
    """Whether any (address, port) listens on one of ports at ip; a wildcard on either side matches."""
    return any(port in ports and (addr == ip or addr in WILDCARDS or ip in WILDCARDS) for addr, port in pairs)


def parse_locks(text: str) -> dict[int, set[int]]:
    """pid -> inodes it holds a lock on, from /proc/locks (waiters, marked '->', hold nothing)."""
    held: dict[int, set[int]] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 8 or parts[1] == "->":
            continue
        try:
            pid = int(parts[4])
            inode = int(parts[5].rsplit(":", 1)[1])
        except (ValueError, IndexError):
            continue
        held.setdefault(pid, set()).add(inode)
    return held


def parse_stat(text: str) -> tuple[str, int]:
    """(state letter, start time in clock ticks since boot) from /proc/PID/stat."""
    rest = text[text.rindex(")") + 2 :].split()
    return rest[0], int(rest[19])


def socket_inodes(fd_links: list[str]) -> set[int]:
    """Socket inodes from readlink() results of /proc/PID/fd/* ('socket:[1234]')."""
    out: set[int] = set()
    for link in fd_links:
        if link.startswith("socket:["):
            try:
                out.add(int(link[8:-1]))
            except ValueError:
                continue
    return out
