"""A fake cluster's SQL for the simulated swarm: one mysql-mimic process (`python -m obstop.fakes.sql`)
answering at every server's loopback SQL address for the bench's cluster, its checkpoints advancing
`freeze_delay` seconds after each minor freeze; and what it recorded (connections, statements), read
after a run."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from obstop.fakes.cluster import FakeCluster

USER, PASSWORD = "root@sys", "bench-sys"
_PAIR = re.compile(r"\(\s*'[0-9.]+'\s*,\s*\d+\s*\)")


@dataclass(frozen=True)
class ClusterSQLProcess:
    pid: int
    directory: Path
    password_file: Path

    def config(self, cluster_id: int = 1) -> dict[str, Any]:
        """The controller's [[cluster_sql]] entry for it."""
        return {"cluster_id": cluster_id, "user": USER, "password_file": str(self.password_file)}


@contextmanager
def cluster_sql(work: Path, inventory: Path, freeze_delay: float) -> Iterator[ClusterSQLProcess]:
    """The process, listening at each server's (ip, sql_port) of the inventory's cluster 1."""
    password_file = work / "sys.password"
    password_file.write_text(PASSWORD + "\n")
    directory = work / "cluster"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "obstop.fakes.sql",
            "--cluster-dir",
            str(directory),
            "--inventory",
            str(inventory),
            "--password-file",
            str(password_file),
            "--freeze-delay",
            str(freeze_delay),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # it says so once it listens (a probe connection would log an error)
        if not line.startswith("fake cluster SQL on"):
            raise RuntimeError(f"the fake cluster SQL did not start: {line!r}")
        yield ClusterSQLProcess(proc.pid, directory, password_file)
    finally:
        proc.terminate()
        proc.wait(10)


def record(directory: Path) -> dict[str, Any]:
    """What the fake cluster saw of the stop: connections, and the checkpoint statements after the freeze
    (how many, on how many connections, how many servers each asked for)."""
    fc = FakeCluster(directory)
    statements = fc.statements()
    freezes = [s for s in statements if "MINOR FREEZE" in s.sql]
    after = freezes[0].at if freezes else float("inf")
    polls = [s for s in statements if "__all_virtual_ls_info" in s.sql and s.at > after]
    reads = [s for s in statements if "__all_virtual_ls_info" in s.sql and s.at <= after]
    per_poll = [len(_PAIR.findall(s.sql)) for s in polls]
    return {
        "connections": len(fc.connections()),
        "statements": len(statements),
        "checkpoint_reads_before_freeze": len(reads),
        "freeze_statements": len(freezes),
        "checkpoint_polls": len(polls),
        "poll_connections": len({s.conn for s in polls}),
        "servers_per_poll_max": max(per_poll, default=0),
        "servers_per_poll_first": per_poll[0] if per_poll else 0,
        "freeze_to_last_poll_s": round(polls[-1].at - after, 3) if polls else None,
    }
