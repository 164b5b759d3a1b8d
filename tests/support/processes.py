"""Other processes as a test sees them: alive or not, waited for without idle sleeps, cleaned up."""

from __future__ import annotations

import os
import select
import signal
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psutil


def alive(pid: int) -> bool:
    """True while pid runs (a zombie counts as gone)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def wait_dead(pid: int, timeout: float = 10.0) -> None:
    """Block until pid has exited (a zombie counts), by waiting on its pidfd."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    try:
        select.select([fd], [], [], timeout)
    finally:
        os.close(fd)
    assert not alive(pid), f"pid {pid} still alive after {timeout}s"


def until(cond: Callable[[], bool], what: str, timeout: float = 30.0, every: float = 0.02) -> None:
    """Poll another process's state (a log, an API) in short bounded steps until cond() holds."""
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"{what} (after {timeout:g}s)"
        time.sleep(every)


def wait_port(host: str, port: int, timeout: float = 10.0) -> None:
    """Until something accepts connections on host:port."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def under(root: Path, proc: psutil.Process) -> bool:
    prefix = str(root.resolve())
    return proc.cwd().startswith(prefix) or any(prefix in a for a in proc.cmdline())


def processes_under(root: Path) -> list[int]:
    """Pids of the processes running in root or naming it on their command line."""
    found = []
    for p in psutil.process_iter():
        try:
            if under(root, p):
                found.append(p.pid)
        except psutil.Error:
            continue
    return found


def kill_tree_under(root: Path) -> None:
    """SIGKILL any process whose cwd or program is under root (fake observers and their children left by
    a test; one that left its home on SIGTERM is still found by its program's path)."""
    prefix = str(root.resolve())
    killed = []
    for proc in psutil.process_iter():
        try:
            if proc.cwd().startswith(prefix) or any(a.startswith(prefix) for a in proc.cmdline()[:2]):
                proc.send_signal(signal.SIGKILL)
                killed.append(proc.pid)
        except psutil.Error:
            continue
    for pid in killed:
        wait_dead(pid)


def obstop_argv(*args: str) -> list[str]:
    """The obstop of the interpreter under test, never whatever `obstop` is first on PATH."""
    return [sys.executable, "-m", "obstop", *args]
