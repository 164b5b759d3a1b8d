"""What the remote shell's functions (ssh_scripts.py) print, parsed: sections, the pid file, a process, and
listeners as `ss` or the kernel's tables print them."""

from __future__ import annotations

import functools
import ipaddress

from obstop.agent.executors import procfs
from obstop.agent.executors.host import Listener, PidFile, ProcessFacts
from obstop.agent.executors.procfs import WILDCARDS


def sections(out: str) -> dict[str, str]:
    parts: dict[str, str] = {}
    name = ""
    for line in out.split("\n"):  # not splitlines(): \x1e separates cmdline arguments
        if line.startswith("@@"):
            name = line[2:]
            parts[name] = ""
        elif name:
            parts[name] += line + "\n"
    return parts


def parse_pidfile(path: str, out: str) -> PidFile:
    status, _, rest = out.partition("\n")
    if status == "MISSING":
        return PidFile(path, exists=False)
    if status == "DENIED":
        return PidFile(path, exists=True, error="Permission denied")
    inode_text, _, content_hex = rest.partition("\n")
    inode = int(inode_text) if inode_text.strip().isdigit() else None
    if status == "LINK":
        return PidFile(path, exists=True, is_symlink=True, inode=inode)
    try:  # od's lines or the shell's own hex: whitespace between bytes is skipped
        content = bytes.fromhex(content_hex).decode("ascii", "replace")
    except ValueError:
        content = ""
    return PidFile(path, exists=True, content=content, inode=inode)


@functools.lru_cache(maxsize=4096)
def _ss_ip(text: str) -> str:
    """An address as ss prints it ([v6], *, v4, with a %device) as procfs spells it."""
    text = text.split("%", 1)[0].strip("[]")
    if text == "*":
        return "::"
    addr = ipaddress.ip_address(text)
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped:
        return str(addr.ipv4_mapped)
    return str(addr)


def parse_listeners(text: str) -> list[Listener]:
    """LISTEN sockets from `ss -ltne` lines or from /proc/net/tcp and tcp6 lines (as lst printed them)."""
    out: list[Listener] = []
    tables: list[str] = []
    for line in text.splitlines():
        parts = line.split()
        if not parts or parts[0] != "LISTEN":
            tables.append(line)
            continue
        ino = next((p[4:] for p in parts[5:] if p.startswith("ino:")), "")
        address, _, port = parts[3].rpartition(":")
        try:
            out.append(Listener(_ss_ip(address), int(port), int(ino)))
        except ValueError:
            continue
    return out + procfs.parse_net_tcp("\n".join(tables)) if tables else out


def ss_keys(addresses: list[str], ports: tuple[int, ...]) -> list[str]:
    """The local addresses, as ss prints them, that procfs.on_address would match; 'ANY:PORT' for any
    address ('*' is ss's own word for the IPv6 wildcard of a dual-stack socket)."""
    if any(a in WILDCARDS for a in addresses):
        return [f"ANY:{p}" for p in ports]
    forms = {"0.0.0.0", "*", "[::]"}
    for a in addresses:
        addr = ipaddress.ip_address(a)
        if addr.version == 4:
            forms |= {str(addr), f"[::ffff:{addr}]"}
        else:
            forms.add(f"[{addr}]")
    return [f"{f}:{p}" for f in sorted(forms) for p in ports]


def parse_process(pid: int, out: str, listeners: list[Listener]) -> ProcessFacts | None:
    """inspect's lines (PID, STAT, BTIME, HZ, UID, USER, EXE, CWD, FDS, CMD, then LOCKS and its lines)."""
    if out.startswith("NOPROC"):
        return None
    head, _, locks_text = out.partition("\nLOCKS\n")
    fields: dict[str, str] = {}
    for line in head.split("\n"):  # not splitlines(): \x1e separates cmdline args
        key, _, value = line.partition(" ")
        if key in fields:  # each is printed once: a second is text a process put in its own /proc
            raise ValueError(f"the host's facts of pid {pid} repeat {key[:16]!r}")
        fields[key] = value
    if fields.get("PID", str(pid)) != str(pid):
        raise ValueError(f"the host inspected pid {fields['PID']}, not {pid}")
    state_ticks = fields.get("STAT", "").split()
    if len(state_ticks) != 2:
        return None  # exited while we looked
    state, ticks = state_ticks[0], int(state_ticks[1])
    btime, hz = float(fields.get("BTIME") or 0), float(fields.get("HZ") or 100)
    start = btime + ticks / hz
    if state == "Z":
        return ProcessFacts(pid=pid, start_time=start, zombie=True)
    uid = int(fields["UID"]) if fields.get("UID", "").isdigit() else None
    exe, cwd = fields.get("EXE") or None, fields.get("CWD") or None
    user = fields.get("USER") or None
    if exe is None:
        return ProcessFacts(
            pid=pid,
            start_time=start,
            zombie=False,
            uid=uid,
            user=user,
            access_error=f"permission denied reading /proc/{pid}/exe",
        )
    cmdline = tuple(x for x in fields.get("CMD", "").split("\x1e") if x)
    inodes = {int(x[8:-1]) for x in fields.get("FDS", "").split() if x.startswith("socket:[")}
    mine = frozenset((x.ip, x.port) for x in listeners if x.inode in inodes)
    locked = procfs.parse_locks(locks_text).get(pid, set())
    return ProcessFacts(
        pid=pid,
        start_time=start,
        zombie=False,
        exe=exe,
        cwd=cwd,
        cmdline=cmdline,
        uid=uid,
        user=user,
        listeners=mine,
        locked_inodes=frozenset(locked),
    )
