"""What the stop procedure needs from a host, and the facts a host reports.

The procedure (agent/procedure.py) is written once against `Host`; the local executor answers it with
psutil and /proc, the SSH executor with a POSIX shell and /proc on the remote side.
"""

from __future__ import annotations

import signal
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable


@dataclass(frozen=True)
class PidFile:
    path: str
    exists: bool
    is_symlink: bool = False
    content: str | None = None
    inode: int | None = None
    error: str | None = None


@dataclass(frozen=True)
class Listener:
    ip: str
    port: int
    inode: int


@dataclass(frozen=True)
class ProcessFacts:
    """One process as /proc shows it. `start_time` tells a recycled pid apart from the original."""

    pid: int
    start_time: float
    zombie: bool
    exe: str | None = None
    cwd: str | None = None
    cmdline: tuple[str, ...] = ()
    uid: int | None = None
    user: str | None = None
    listeners: frozenset[tuple[str, int]] = field(default_factory=frozenset)
    locked_inodes: frozenset[int] = field(default_factory=frozenset)
    access_error: str | None = None


@dataclass(frozen=True)
class Resolved:
    """The home path and binary as the host resolves them (symlinks followed), and whether they exist (a
    mistyped home path is an error, never "stopped")."""

    home: str
    binary: str
    home_exists: bool = True
    binary_exists: bool = True


_MAX_PID = 4_194_304  # kernel pid_max ceiling on 64-bit Linux


def parse_pid(content: str) -> int | None:
    text = content.strip()
    if not text.isdigit():
        return None
    pid = int(text)
    return pid if 0 < pid <= _MAX_PID else None


@dataclass(frozen=True)
class Facts:
    """Everything a probe looks at, gathered in one go (one round trip over SSH)."""

    resolved: Resolved
    pid_file: PidFile
    listeners: list[Listener]
    process: ProcessFacts | None  # of the pid the pid file names, when it names a valid one


@dataclass(frozen=True)
class Launch:
    """What `cd HOME && ./bin/observer` did: it daemonizes, so the launcher returns once it is started."""

    user: str
    exit_status: int | None  # None: the launcher had not returned by the timeout
    output: str = ""


class Host(Protocol):
    """The primitives of the stop procedure. Every method is bounded in time by the implementation."""

    name: str

    async def facts(self, home_path: str, pid_file: str, ip: str, ports: tuple[int, ...]) -> Facts:
        """What a probe looks at: resolved paths, the pid file, listeners, and the process it names."""
        ...

    async def inspect(self, pid: int) -> ProcessFacts | None:
        """Facts of a live process, or None when there is no such process."""
        ...

    async def send_signal(self, pid: int, sig: signal.Signals, start_time: float) -> bool:
        """Signal pid only if it is still the process that started at start_time; False if it is gone."""
        ...

    async def wait_exit(self, pid: int, start_time: float, timeout: float) -> bool:
        """True once the process is gone (or a zombie), False if still alive at the timeout."""
        ...

    async def listeners(self, ip: str, ports: tuple[int, ...]) -> list[Listener]:
        """TCP sockets in LISTEN state on these ports, bound to ip or to a wildcard address."""
        ...

    async def socket_owners(self, inodes: set[int]) -> dict[int, int]:
        """Which pid holds each socket inode (best effort)."""
        ...

    async def remove_pid_file(self, path: str, expected: str) -> bool:
        """Remove the pid file only if it still says `expected` (a new observer may have started)."""
        ...

    async def launch(self, home_path: str, timeout: float) -> Launch:
        """Run `./bin/observer` with no arguments in home_path, as the home's owner (locally) or as the
        SSH user (who must own it), the way observer restarts itself from its persisted configuration.
        Raises LaunchRefused when it cannot run as the owner."""
        ...

    async def read_tail(self, path: str, max_bytes: int = 2000) -> str:
        """The end of a text file (a log), or "" when it cannot be read."""
        ...

    async def close(self) -> None: ...


@dataclass(frozen=True)
class Settled:
    """What `OneTrip.settle` saw after the signal: the exit, the ports, the pid file."""

    exited: bool
    exit_s: float | None = None  # seconds from the settle's start to the exit
    ports_free_s: float | None = None  # ... to both ports free (None: still held at the deadline)
    removed: bool = False  # the pid file, removed (it still named the stopped pid)


@runtime_checkable
class OneTrip(Protocol):
    """A host where a round trip costs (SSH): after the signal, wait for the exit, then for the ports to
    be free, then remove the pid file, in one trip; the procedure makes the same checks, in that order."""

    async def settle(
        self,
        pid: int,
        start_time: float,
        exit_timeout: float,
        addresses: list[str],
        ports: tuple[int, ...],
        port_timeout: float,
        pid_file: str | None,
        expected: str | None,
    ) -> Settled:
        """Stops waiting (exited False) when the process outlives exit_timeout; looks at the ports only
        after it exited, and removes the pid file only once they are free and it still says expected."""
        ...


class Moved(Exception):
    """The proven process is gone and its pid file names another one now: prove again, nothing was sent."""


class Changed(Exception):
    """The proven pid lives but no longer runs what was proved (its exe, cwd or pid file): nothing sent."""


class Trip(Protocol):
    """One round trip begun by SignalTrip.signal_trip: the check and the signal, then the settle."""

    async def signal(self, sig: signal.Signals) -> bool:
        """Check the process is still the one proved, signal it; True once sent, False if it was gone.
        Raises Changed or Moved (nothing sent). Returns once the signal is decided, before the settle."""
        ...

    async def settled(self) -> Settled:
        """The rest of the trip: what OneTrip.settle says."""
        ...


@runtime_checkable
class SignalTrip(Protocol):
    """A host that checks the proof, signals and settles in one round trip: the process must still be the
    one proved a moment before (pid and start time, executable and cwd, the pid file naming it)."""

    def signal_trip(
        self,
        proved: ProcessFacts,
        resolved: Resolved,
        exit_timeout: float,
        addresses: list[str],
        ports: tuple[int, ...],
        port_timeout: float,
        pid_file: str | None,
        expected: str | None,
    ) -> AbstractAsyncContextManager[Trip]:
        """A session held for the trip; nothing is sent before Trip.signal (the caller records the signal
        first). Leaving it without Trip.settled drops the session."""
        ...
