"""The floor: the same stop on this machine with no network and no tool around it.

In-process: for every host read the pid file, check the process is HOME's observer (cwd and command line),
SIGTERM it; then poll /proc every 2 ms until every one is gone (a zombie counts as gone) and both its ports
bind again; remove the pid files. Whatever a stop tool adds is measured against this.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from bench.common import port_free


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] == "Z"
    except FileNotFoundError:
        return True


def _is_observer(pid: int, home: str) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        return os.readlink(f"/proc/{pid}/cwd") == home and f"{home}/bin/observer".encode() in cmdline
    except OSError:
        return False


def stop_all(hosts: list[tuple[str, str]], timeout: float = 30.0) -> dict[str, int]:
    """hosts: (ip, home) pairs. Returns how many failed (not the observer, or still there at timeout)."""
    failed = 0
    waiting: list[tuple[int | None, str, str]] = []
    for ip, home in hosts:
        try:
            pid = int(Path(home, "run", "observer.pid").read_text())
        except (OSError, ValueError):
            waiting.append((None, ip, home))
            continue
        if _gone(pid):
            waiting.append((None, ip, home))
        elif _is_observer(pid, home):
            os.kill(pid, signal.SIGTERM)
            waiting.append((pid, ip, home))
        else:
            failed += 1
    deadline = time.monotonic() + timeout
    while waiting and time.monotonic() < deadline:
        still: list[tuple[int | None, str, str]] = []
        for maybe, ip, home in waiting:
            if (maybe is None or _gone(maybe)) and port_free(ip, 2881) and port_free(ip, 2882):
                Path(home, "run", "observer.pid").unlink(missing_ok=True)
            else:
                still.append((maybe, ip, home))
        waiting = still
        if waiting:
            time.sleep(0.002)
    return {"failed": failed + len(waiting), "unreachable": 0}
