"""CPU counters per process: user+sys seconds before and after a measured stop, by named group.

A group's CPU is that of its processes and every descendant, alive or already reaped: for each process
alive in the tree, its own user+sys plus what it has reaped of its children (cutime+cstime), so an sshd
listener counts the sessions it forked and the commands they ran. Other processes' counters come from
/proc/PID/stat in clock ticks (10 ms here): each delta is within ±10 ms per process, without bias, so
sums over 30 agents stay meaningful over a few runs. The benchmark's own process (the client) is read
with getrusage, to the microsecond, and includes the children it waited for (a script, Ansible).
"""

from __future__ import annotations

import resource
from collections.abc import Iterable, Mapping

import psutil


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
        except psutil.Error:
            continue  # gone between the listing and the read: its time is now its parent's cutime
        total += t.user + t.system + t.children_user + t.children_system
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
