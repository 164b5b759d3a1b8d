"""The identity proof: is this process the observer of this home path?

A process is the observer of HOME only if all of these hold (DESIGN.md, "Identity before any signal"):
  1. its executable resolves to HOME/bin/observer, or it is an interpreter whose script argument does;
  2. its cwd is HOME;
  3. it holds the lock on HOME/run/observer.pid, or listens on the configured SQL or RPC port.
A stale pid file, a recycled pid, or another deployment's observer on the same host fails the proof.
"""

from __future__ import annotations

import posixpath
import re

from obstop.agent.executors.host import PidFile, ProcessFacts, Resolved
from obstop.agent.executors.procfs import listens_on
from obstop.agent.protocol import ObserverTarget

# Interpreters that may run a script standing in for observer (the fake observer is a Python script).
_INTERPRETER = re.compile(r"^(python[0-9.]*|pypy[0-9.]*|sh|bash|dash|ksh|zsh|perl[0-9.]*)$")
_DELETED = " (deleted)"


def _exe_path(exe: str) -> str:
    # an observer whose binary was replaced on disk (upgrade) shows "path (deleted)"
    return exe[: -len(_DELETED)] if exe.endswith(_DELETED) else exe


def _script_arg(cmdline: tuple[str, ...]) -> str | None:
    for arg in cmdline[1:]:
        if arg.startswith("-"):
            continue
        return arg
    return None


def runs_observer_binary(facts: ProcessFacts, target: ObserverTarget, resolved: Resolved) -> bool:
    wanted = {resolved.binary, target.binary, posixpath.join(resolved.home, "bin/observer")}
    if facts.exe is not None and _exe_path(facts.exe) in wanted:
        return True
    if facts.exe is None or not _INTERPRETER.match(posixpath.basename(_exe_path(facts.exe))):
        return False
    script = _script_arg(facts.cmdline)
    if script is None or facts.cwd is None:
        return False
    return posixpath.normpath(posixpath.join(facts.cwd, script)) in wanted


def prove(facts: ProcessFacts, target: ObserverTarget, resolved: Resolved, pid_file: PidFile) -> str | None:
    """None when the process is proved to be the observer; otherwise the reason it is not."""
    pid = facts.pid
    if facts.access_error:
        return f"cannot inspect pid {pid}: {facts.access_error}"
    if not runs_observer_binary(facts, target, resolved):
        shown = " ".join(facts.cmdline)[:200] or "?"
        return (
            f"pid {pid} named by {pid_file.path} is not the observer of {target.home_path}: "
            f"it runs {facts.exe} ({shown})"
        )
    if facts.cwd != resolved.home:
        return f"pid {pid} runs {target.binary} but its cwd is {facts.cwd}, not {resolved.home}"
    holds_lock = pid_file.inode is not None and pid_file.inode in facts.locked_inodes
    listens = listens_on(facts.listeners, target.ip, target.ports)
    if not (holds_lock or listens):
        return (
            f"pid {pid} neither holds the lock on {pid_file.path} nor listens on "
            f"{target.ip}:{target.sql_port}/{target.rpc_port}"
        )
    return None
