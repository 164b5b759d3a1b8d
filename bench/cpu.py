"""CPU counters per process: user+sys seconds before and after a measured stop, by named group.

A group's CPU is that of its processes and every descendant, alive or already reaped: for each process
alive in the tree, its own CPU plus what it has reaped of its children (cutime+cstime), so an sshd listener
counts the sessions it forked and the commands they ran. A live process's own CPU is read from its
process CPU clock (clock_gettime on the clock id Linux derives from its pid: every thread, to the
nanosecond); only reaped children's time comes in /proc's clock ticks (10 ms here, each delta within
±10 ms per process, without bias). The benchmark's own process (the client) is read with getrusage and
includes the children it waited for (a script, Ansible).
"""

from __future__ import annotations

import resource
import time
from collections.abc import Iterable, Mapping

import psutil


def own_cpu(p: psutil.Process) -> float:
    """All threads of a live process, to the nanosecond (Linux: CPUCLOCK_SCHED of the process's clock)."""
    try:
        return time.clock_gettime((~p.pid << 3) | 2)
    except OSError:  # gone or a zombie: /proc's ticks
        t = p.cpu_times()
        return t.user + t.system


def tree_cpu(pid: int) -> float:
    """user+sys seconds of a process and all its descendants (reaped ones through cutime/cstime)."""
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0.0
    total = 0.0
    for p in procs:
        try:
            t = p.cpu_times()
            total += own_cpu(p) + t.children_user + t.children_system
        except psutil.Error:
            continue  # gone between the listing and the read: its time is now its parent's cutime
    return total


def client_cpu() -> float:
    """This process and the children it has waited for, to the microsecond."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


class Meter:
    """Snapshot named groups of processes (plus the client) now; `delta()` later gives seconds per group."""

    def __init__(self, groups: Mapping[str, Iterable[int]]) -> None:
        self.groups = {name: list(pids) for name, pids in groups.items()}
        self.before = self._read()

    def _read(self) -> dict[str, float]:
        out = {name: sum(tree_cpu(p) for p in pids) for name, pids in self.groups.items()}
        out["client"] = client_cpu()
        return out

    def delta(self) -> dict[str, float]:
        after = self._read()
        return {name: round(after[name] - self.before[name], 4) for name in after}
