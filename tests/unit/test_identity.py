"""The identity proof on synthetic process facts: each of its rules, and what each refusal says."""

from __future__ import annotations

from dataclasses import replace

import pytest

from obstop.agent.executors.host import PidFile, ProcessFacts, Resolved, parse_pid
from obstop.agent.identity import prove
from obstop.agent.protocol import ObserverTarget

HOME = "/home/admin/oceanbase"
BINARY = f"{HOME}/bin/observer"
TARGET = ObserverTarget(host="h1", ip="10.0.0.5", home_path=HOME)
RESOLVED = Resolved(home=HOME, binary=BINARY)
PID_FILE = PidFile(path=TARGET.pid_file, exists=True, content="4242\n", inode=777)
# the observer as /proc shows it: its binary, in HOME, locking its pid file, listening on both ports
OBSERVER = ProcessFacts(
    pid=4242,
    start_time=1000.0,
    zombie=False,
    exe=BINARY,
    cwd=HOME,
    cmdline=(BINARY, "-p", "2881", "-P", "2882"),
    listeners=frozenset({("10.0.0.5", 2881), ("10.0.0.5", 2882)}),
    locked_inodes=frozenset({777, 5}),
)


def refusal(facts: ProcessFacts, pid_file: PidFile = PID_FILE) -> str | None:
    return prove(facts, TARGET, RESOLVED, pid_file)


def test_the_observer_is_proved() -> None:
    assert refusal(OBSERVER) is None


@pytest.mark.parametrize(
    "facts",
    [
        replace(OBSERVER, exe=BINARY + " (deleted)"),  # its binary was replaced on disk (an upgrade)
        replace(OBSERVER, exe="/usr/bin/python3.11", cmdline=("python3", BINARY, "--daemonize")),
        replace(OBSERVER, exe="/usr/bin/python3", cmdline=("python3", "-u", "./bin/observer")),  # relative
        replace(OBSERVER, exe="/bin/bash", cmdline=("bash", "bin/observer")),
    ],
    ids=["deleted-binary", "interpreter", "interpreter-relative-script", "shell-script"],
)
def test_rule_2_the_binary_or_an_interpreter_running_it(facts: ProcessFacts) -> None:
    assert refusal(facts) is None


@pytest.mark.parametrize(
    "facts",
    [
        replace(OBSERVER, exe="/usr/bin/sleep", cmdline=("sleep", "300")),
        replace(OBSERVER, exe="/opt/other/bin/observer", cmdline=("/opt/other/bin/observer",)),
        replace(OBSERVER, exe="/usr/bin/python3", cmdline=("python3", "-c", "import time")),
        replace(OBSERVER, exe="/usr/bin/python3", cmdline=("python3", "/tmp/bin/observer")),
        replace(OBSERVER, exe="/usr/bin/python3", cmdline=("python3",)),
        replace(OBSERVER, exe="/usr/bin/node", cmdline=("node", BINARY)),  # not an interpreter we allow
        replace(OBSERVER, exe=None, cmdline=()),
    ],
    ids=["unrelated", "another-deployment", "python-c", "script-elsewhere", "bare-python", "node", "no-exe"],
)
def test_rule_2_anything_else_is_not_the_observer(facts: ProcessFacts) -> None:
    reason = refusal(facts)
    assert reason and reason.startswith(f"pid 4242 named by {TARGET.pid_file} is not the observer of {HOME}")
    assert f"it runs {facts.exe}" in reason


def test_rule_3_the_cwd_is_home() -> None:
    reason = refusal(replace(OBSERVER, cwd="/home/admin"))
    assert reason == f"pid 4242 runs {BINARY} but its cwd is /home/admin, not {HOME}"
    assert refusal(replace(OBSERVER, cwd=None)) is not None


def test_a_home_behind_a_symlink_is_compared_resolved() -> None:
    real = "/data/disk1/oceanbase"
    facts = replace(OBSERVER, exe=f"{real}/bin/observer", cmdline=(f"{real}/bin/observer",), cwd=real)
    assert prove(facts, TARGET, Resolved(home=real, binary=f"{real}/bin/observer"), PID_FILE) is None
    assert refusal(facts) is not None  # unresolved, the same process is somewhere else


NEITHER = f"pid 4242 neither holds the lock on {TARGET.pid_file} nor listens on 10.0.0.5:2881/2882"


@pytest.mark.parametrize(
    ("locked", "listeners", "pid_file"),
    [
        (frozenset({777}), frozenset(), PID_FILE),  # lock held, not listening (yet, or elsewhere)
        (frozenset(), frozenset({("10.0.0.5", 2881)}), PID_FILE),  # SQL port, no lock
        (frozenset(), frozenset({("10.0.0.5", 2882)}), PID_FILE),  # RPC port, no lock
        (frozenset(), frozenset({("0.0.0.0", 2882)}), PID_FILE),  # a wildcard covers the target's address
        (frozenset(), frozenset({("::", 2881)}), PID_FILE),
    ],
    ids=["lock-only", "sql-port-only", "rpc-port-only", "wildcard-v4", "wildcard-v6"],
)
def test_rule_4_the_lock_or_a_configured_port_is_enough(
    locked: frozenset[int], listeners: frozenset[tuple[str, int]], pid_file: PidFile
) -> None:
    assert refusal(replace(OBSERVER, locked_inodes=locked, listeners=listeners), pid_file) is None


@pytest.mark.parametrize(
    ("locked", "listeners", "pid_file"),
    [
        (frozenset(), frozenset(), PID_FILE),
        (frozenset({778}), frozenset({("10.0.0.5", 3881)}), PID_FILE),  # another file's lock, other ports
        (frozenset(), frozenset({("10.0.0.6", 2881), ("10.0.0.6", 2882)}), PID_FILE),  # another address
        (frozenset({777}), frozenset(), replace(PID_FILE, inode=None)),  # the pid file's inode is unknown
    ],
    ids=["nothing", "other-lock-other-ports", "other-address", "unknown-inode"],
)
def test_rule_4_neither_the_lock_nor_a_configured_port_is_refused(
    locked: frozenset[int], listeners: frozenset[tuple[str, int]], pid_file: PidFile
) -> None:
    assert refusal(replace(OBSERVER, locked_inodes=locked, listeners=listeners), pid_file) == NEITHER


def test_facts_that_cannot_be_read_refuse() -> None:
    reason = refusal(replace(OBSERVER, access_error="Permission denied"))
    assert reason == "cannot inspect pid 4242: Permission denied"


@pytest.mark.parametrize(
    ("content", "pid"),
    [
        ("4242\n", 4242),
        ("  17 \n", 17),
        ("", None),
        ("garbage", None),
        ("-1", None),
        ("0", None),
        ("12 13", None),
        ("4194304", 4194304),
        ("4194305", None),
        ("99999999999999999999", None),
    ],
)
def test_pid_file_content(content: str, pid: int | None) -> None:
    assert parse_pid(content) == pid
