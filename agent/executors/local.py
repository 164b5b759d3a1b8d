"""The local executor: psutil and /proc on this host, every blocking call off the event loop.

Signals go through a pidfd opened before the final identity check, so a pid recycled between the check
and the signal can never be hit; exits are awaited on the pidfd becoming readable, not by polling. The
pidfd a signal went through is kept for the wait on that exit (no second identity check: it is the very
process signalled), and after the exit the ports and the pid file are settled in one go (`settle`, as
over SSH): a stop crosses to a worker thread four times (facts, signal, ports and pid file).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import signal
import socket
import tempfile
import time
from typing import Any

import psutil

from obstop.agent.errors import LaunchRefused
from obstop.agent.executors import netdiag, procfs
from obstop.agent.executors.host import (
    Facts,
    Launch,
    Listener,
    PidFile,
    ProcessFacts,
    Resolved,
    Settled,
    parse_pid,
)

KEPT_PIDFDS = 64  # pidfds of signalled processes awaiting their wait (one per stop in flight)


class LocalHost:
    def __init__(self, name: str | None = None) -> None:
        self.name = name or socket.gethostname()
        self._signalled: dict[tuple[int, float], int] = {}  # (pid, start time) -> the pidfd signalled

    async def facts(self, home_path: str, pid_file: str, ip: str, ports: tuple[int, ...]) -> Facts:
        return await asyncio.to_thread(_facts, home_path, pid_file, ip, ports)

    async def inspect(self, pid: int) -> ProcessFacts | None:
        return await asyncio.to_thread(_inspect, pid)

    async def send_signal(self, pid: int, sig: signal.Signals, start_time: float) -> bool:
        fd = await asyncio.to_thread(_send_signal, pid, sig, start_time)
        if fd is None:
            return False
        self._keep((pid, start_time), fd)
        return True

    def _keep(self, key: tuple[int, float], fd: int) -> None:
        old = self._signalled.pop(key, None)
        if old is not None:
            os.close(old)
        while len(self._signalled) >= KEPT_PIDFDS:  # a wait that never came: bounded all the same
            os.close(self._signalled.pop(next(iter(self._signalled))))
        self._signalled[key] = fd

    async def wait_exit(self, pid: int, start_time: float, timeout: float) -> bool:
        fd = self._signalled.pop((pid, start_time), None)  # the very process signalled
        checked = fd is not None
        if fd is None:
            try:
                fd = os.pidfd_open(pid)
            except ProcessLookupError:
                return True
        try:
            if not checked and not await asyncio.to_thread(_same_process, pid, start_time):
                return True
            loop = asyncio.get_running_loop()
            readable: asyncio.Future[None] = loop.create_future()

            def on_exit() -> None:
                if not readable.done():
                    readable.set_result(None)

            loop.add_reader(fd, on_exit)
            try:
                async with asyncio.timeout(timeout):
                    await readable
                return True
            except TimeoutError:
                return not await asyncio.to_thread(_same_process, pid, start_time)
            finally:
                loop.remove_reader(fd)
        finally:
            os.close(fd)

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
        """OneTrip's settle: the exit (on the pidfd), then the ports, then the pid file, each look at the
        ports and the removal that follows them in one worker-thread call."""
        began = time.monotonic()
        if not await self.wait_exit(pid, start_time, exit_timeout):
            return Settled(exited=False)
        exit_s = time.monotonic() - began
        deadline = time.monotonic() + port_timeout
        delay = 0.002
        while True:
            free, removed = await asyncio.to_thread(_free_then_remove, addresses, ports, pid_file, expected)
            if free:
                return Settled(True, exit_s, time.monotonic() - began, removed)
            if time.monotonic() >= deadline:
                return Settled(True, exit_s)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.05)

    async def listeners(self, ip: str, ports: tuple[int, ...]) -> list[Listener]:
        return procfs.on_address(await asyncio.to_thread(_listening, frozenset(ports), ip), ip, ports)

    async def socket_owners(self, inodes: set[int]) -> dict[int, int]:
        return await asyncio.to_thread(_socket_owners, inodes)

    async def remove_pid_file(self, path: str, expected: str) -> bool:
        return await asyncio.to_thread(_remove_if, path, expected)

    async def launch(self, home_path: str, timeout: float) -> Launch:
        _uid, _gid, user, extra = await asyncio.to_thread(_run_as, self.name, home_path)
        env = dict(os.environ)
        lib = os.path.join(home_path, "lib")
        env["LD_LIBRARY_PATH"] = lib + (
            os.pathsep + env["LD_LIBRARY_PATH"] if env.get("LD_LIBRARY_PATH") else ""
        )
        with tempfile.TemporaryFile() as out:  # not a pipe: the daemon must not hold our end open
            proc = await asyncio.create_subprocess_exec(
                "./bin/observer",
                cwd=home_path,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                start_new_session=True,
                env=env,
                **extra,
            )
            try:
                async with asyncio.timeout(timeout):
                    status: int | None = await proc.wait()
            except TimeoutError:
                status = None  # left running: it may be the observer itself, in the foreground
            out.seek(0)
            text = out.read()[-4000:].decode("utf-8", "replace")
        return Launch(user=user, exit_status=status, output=text)

    async def read_tail(self, path: str, max_bytes: int = 2000) -> str:
        return await asyncio.to_thread(_tail, path, max_bytes)

    async def close(self) -> None:
        while self._signalled:
            os.close(self._signalled.popitem()[1])


def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _run_as(host: str, home_path: str) -> tuple[int, int, str, dict[str, Any]]:
    """As whom to start the observer of home_path: its owner (root becomes it; anyone else must be it)."""
    try:
        st = os.stat(home_path)
    except OSError as exc:
        raise LaunchRefused(host, f"cannot start the observer of {home_path}: {exc.strerror}") from exc
    me, owner = os.geteuid(), st.st_uid
    name = _user_name(owner)
    if me == owner:
        return owner, st.st_gid, name, {}
    if me != 0:
        raise LaunchRefused(
            host,
            f"{home_path} belongs to {name}; this agent runs as {_user_name(me)} and cannot start "
            f"an observer as its owner (run the agent as {name})",
        )
    groups = os.getgrouplist(name, st.st_gid) if name != str(owner) else [st.st_gid]
    return owner, st.st_gid, name, {"user": owner, "group": st.st_gid, "extra_groups": groups}


def _tail(path: str, max_bytes: int) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - max_bytes))
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


def _facts(home_path: str, pid_file: str, ip: str, ports: tuple[int, ...]) -> Facts:
    home = os.path.realpath(home_path)
    binary = os.path.realpath(os.path.join(home, "bin", "observer"))
    resolved = Resolved(home, binary, os.path.isdir(home), os.path.isfile(binary))
    found = _read_pid_file(pid_file)
    # one netlink dump answers both the ports and the process's own sockets on them
    listening = _listening(frozenset(ports), ip)
    listeners = procfs.on_address(listening, ip, ports)
    readable = found.exists and not found.is_symlink and not found.error
    pid = parse_pid(found.content or "") if readable else None
    return Facts(resolved, found, listeners, _inspect(pid, listening, ip, ports) if pid else None)


def _read_pid_file(path: str) -> PidFile:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return PidFile(path, exists=False)
    except OSError as exc:
        return PidFile(path, exists=False, error=exc.strerror or str(exc))
    if os.path.islink(path):
        return PidFile(path, exists=True, is_symlink=True, inode=st.st_ino)
    try:
        with open(path, "rb") as f:
            raw = f.read(64)
    except OSError as exc:
        return PidFile(path, exists=True, inode=st.st_ino, error=exc.strerror or str(exc))
    return PidFile(path, exists=True, content=raw.decode("ascii", "replace"), inode=st.st_ino)


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


def _listening(ports: frozenset[int] | None = None, ip: str | None = None) -> list[Listener]:
    """Listening sockets: every one, or those on ports (at ip, or a wildcard address, when given)."""
    try:
        return netdiag.listening(ports, ip)
    except OSError:  # no netlink here: the kernel's text table, slower
        found = procfs.parse_net_tcp(_read_net_tcp())
        if ports is None:
            return found
        return procfs.on_address(found, ip, tuple(ports)) if ip else [x for x in found if x.port in ports]


def _socket_inodes(pid: int) -> set[int]:
    """Socket inodes a process holds open; raises PermissionError for another user's process."""
    fd_dir = f"/proc/{pid}/fd"
    links = []
    for name in os.listdir(fd_dir):
        with contextlib.suppress(OSError):
            links.append(os.readlink(f"{fd_dir}/{name}"))
    return procfs.socket_inodes(links)


def _read_net_tcp() -> str:
    return _read("/proc/net/tcp") + _read("/proc/net/tcp6")


def _inspect(
    pid: int, listening: list[Listener] | None = None, ip: str = "", ports: tuple[int, ...] = ()
) -> ProcessFacts | None:
    """ip, ports: where the observer should listen; a process that does is proved by that (identity.prove
    asks for the pid-file lock or the ports), so the system's whole lock table is not read for it."""
    try:
        proc = psutil.Process(pid)
        with proc.oneshot():
            start = proc.create_time()
            zombie = proc.status() == psutil.STATUS_ZOMBIE
            if zombie:
                return ProcessFacts(pid=pid, start_time=start, zombie=True)
            uid = proc.uids().real
            try:
                user: str | None = proc.username()
            except (KeyError, psutil.Error):
                user = None
            try:
                exe, cwd, cmdline = proc.exe(), proc.cwd(), tuple(proc.cmdline())
                sockets = _socket_inodes(pid)
            except (psutil.AccessDenied, PermissionError) as exc:
                return ProcessFacts(
                    pid=pid,
                    start_time=start,
                    zombie=False,
                    uid=uid,
                    user=user,
                    access_error=f"permission denied ({getattr(exc, 'msg', None) or exc})",
                )
    except psutil.NoSuchProcess:
        return None
    except psutil.ZombieProcess:
        return ProcessFacts(pid=pid, start_time=0.0, zombie=True)
    found = _listening() if listening is None else listening
    listeners = frozenset((x.ip, x.port) for x in found if x.inode in sockets)
    proved = bool(ports) and procfs.listens_on(listeners, ip, ports)
    locks = set() if proved else procfs.parse_locks(_read("/proc/locks")).get(pid, set())
    return ProcessFacts(
        pid=pid,
        start_time=start,
        zombie=False,
        exe=exe or None,
        cwd=cwd or None,
        cmdline=cmdline,
        uid=uid,
        user=user,
        listeners=listeners,
        locked_inodes=frozenset(locks),
    )


def _same_process(pid: int, start_time: float) -> bool:
    try:
        proc = psutil.Process(pid)
        with proc.oneshot():
            return proc.create_time() == start_time and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _send_signal(pid: int, sig: signal.Signals, start_time: float) -> int | None:
    """The pidfd the signal went through (the caller closes it), or None if the process is gone."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return None
    try:
        # the pidfd pins the process: if it is still the one we proved, the signal cannot hit another
        if not _same_process(pid, start_time):
            os.close(fd)
            return None
        signal.pidfd_send_signal(fd, sig)
    except ProcessLookupError:
        os.close(fd)
        return None
    except BaseException:
        os.close(fd)
        raise
    return fd


def _free_then_remove(
    addresses: list[str], ports: tuple[int, ...], pid_file: str | None, expected: str | None
) -> tuple[bool, bool]:
    """(the ports are free at every address, the pid file was removed: only once they are, and only if
    it still says expected)."""
    listening = _listening(frozenset(ports), addresses[0] if len(addresses) == 1 else None)
    if any(procfs.on_address(listening, ip, ports) for ip in addresses):
        return False, False
    return True, pid_file is not None and expected is not None and _remove_if(pid_file, expected)


def _socket_owners(inodes: set[int]) -> dict[int, int]:
    owners: dict[int, int] = {}
    for proc in psutil.process_iter():
        with contextlib.suppress(psutil.Error, OSError):
            fd_dir = f"/proc/{proc.pid}/fd"
            links = []
            for name in os.listdir(fd_dir):
                with contextlib.suppress(OSError):
                    links.append(os.readlink(f"{fd_dir}/{name}"))
            for inode in procfs.socket_inodes(links) & inodes:
                owners[inode] = proc.pid
    return owners


def _remove_if(path: str, expected: str) -> bool:
    try:
        if os.path.islink(path):
            return False
        with open(path, "rb") as f:
            if f.read(64).decode("ascii", "replace").strip() != expected.strip():
                return False
        os.unlink(path)
        return True
    except OSError:
        return False
