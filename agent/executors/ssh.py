"""The SSH executor: the same primitives as the local one, answered by a POSIX shell and /proc remotely
(the shell's functions are in ssh_scripts.py, their output parsed in ssh_output.py); `settle` does the
wait after a signal in one trip, and `signal_trip` the check, the signal and the settle in one.

One connection per host, reused; at most `max_sessions` channels on it at once (OpenSSH's MaxSessions
is 10) and a shared limit on concurrent handshakes (sshd's MaxStartups drops the rest). Host keys are
checked against known_hosts; every remote call runs under a timeout. No Python is needed remotely.
"""

from __future__ import annotations

import asyncio
import contextlib
import posixpath
import shlex
import signal
from collections.abc import AsyncIterator, Awaitable
from typing import TypeVar

import asyncssh

from obstop.agent.errors import (
    ExecutorError,
    HostKeyMismatch,
    HostUnreachable,
    LaunchRefused,
    LoginRefused,
    RemoteCommandFailed,
)
from obstop.agent.executors import procfs
from obstop.agent.executors import ssh_output as parse
from obstop.agent.executors import ssh_scripts as scripts
from obstop.agent.executors.host import (
    Changed,
    Facts,
    Launch,
    Listener,
    Moved,
    ProcessFacts,
    Resolved,
    Settled,
    parse_pid,
)
from obstop.agent.executors.ssh_config import SSHHostConfig
from obstop.agent.executors.ssh_shell import Shell

T = TypeVar("T")


class _Trip:
    """SSHHost.signal_trip's round trip on one leased shell."""

    def __init__(self, host: SSHHost, shell: Shell, args: tuple[str, str], limit: float) -> None:
        self._host, self._shell, self._args, self._limit = host, shell, args, limit

    async def signal(self, sig: signal.Signals) -> bool:
        head, tail = self._args  # the signal's name goes between them, by position
        self._host._begin(self._shell, f"trip {head} {sig.name.removeprefix('SIG')} {tail}", "fn")
        first = await self._host._call(self._shell.line(self._host.target.command_timeout), "trip")
        word, _, detail = first.partition(" ")
        if word in ("CHANGED", "MOVED"):
            await self._host._call(self._shell.end(self._limit), "trip")
            if word == "MOVED":
                raise Moved(f"its pid file names another process on {self._host.name} now")
            raise Changed(f"it no longer runs what was proved (its {detail} changed)")
        return word == "SENT"

    async def settled(self) -> Settled:
        rc, out = await self._host._call(self._shell.end(self._limit), "trip")
        if rc != 0:
            raise RemoteCommandFailed(self._host.name, "trip", rc, "")
        return _settled(out)


def _settled(out: str) -> Settled:
    lines = dict(line.partition(" ")[::2] for line in out.splitlines())
    if "EXIT" not in lines:
        return Settled(exited=False)
    free = lines.get("FREE")
    return Settled(
        exited=True,
        exit_s=int(lines["EXIT"]) / 100,
        ports_free_s=int(free) / 100 if free is not None else None,
        removed="REMOVED" in lines,
    )


def _cmd_check(proved: ProcessFacts, resolved: Resolved) -> str:
    """The command line a trip compares too: only when the proof rested on it (an interpreter running
    HOME/bin/observer); a binary's own arguments are its business."""
    exe = (proved.exe or "").removesuffix(" (deleted)")
    if exe in (resolved.binary, posixpath.join(resolved.home, "bin/observer")):
        return ""
    return "".join(f"{a}\x1e" for a in proved.cmdline)


class SSHHost:
    """One remote host. Safe to share between concurrent procedures."""

    def __init__(
        self,
        config: SSHHostConfig,
        *,
        handshakes: asyncio.Semaphore | None = None,
        max_sessions: int = 8,
        shell: str = scripts.SHELL,
    ) -> None:
        """shell: the command whose shell runs the steps (bash where there is one, else /bin/sh)."""
        self.name = config.host
        self._shell = shell
        self.target = config
        self._handshakes = handshakes or asyncio.Semaphore(8)
        self._sessions = asyncio.Semaphore(max_sessions)
        self._idle: list[Shell] = []
        self._conn: asyncssh.SSHClientConnection | None = None
        self._connecting = asyncio.Lock()
        self._clock: tuple[float, float] | None = None  # (btime, CLK_TCK) of the remote kernel
        self._ss = False  # lst prints ss's lines (else the kernel tables')

    async def _connection(self) -> asyncssh.SSHClientConnection:
        async with self._connecting:
            if self._conn is not None and not self._conn.is_closed():
                return self._conn
            t = self.target
            where = t.where
            try:
                async with self._handshakes:
                    self._conn = await asyncssh.connect(
                        t.address,
                        t.port,
                        username=t.user,
                        client_keys=[str(t.identity)],
                        known_hosts=str(t.known_hosts),
                        config=None,
                        agent_path=None,
                        connect_timeout=t.connect_timeout,
                        login_timeout=t.connect_timeout,
                    )
            except asyncssh.HostKeyNotVerifiable as exc:
                raise HostKeyMismatch(self.name, f"host key of {where} not trusted: {exc.reason}") from exc
            except asyncssh.PermissionDenied as exc:
                raise LoginRefused(self.name, f"login to {where} refused: {exc.reason}") from exc
            except asyncssh.Error as exc:
                raise ExecutorError(self.name, f"SSH to {where} failed: {exc.reason}") from exc
            except (OSError, TimeoutError) as exc:
                raise HostUnreachable(self.name, f"cannot reach {where}: {exc or 'timed out'}") from exc
            return self._conn

    @contextlib.asynccontextmanager
    async def _lease(self) -> AsyncIterator[Shell]:
        """One of this host's resident shells (at most max_sessions at once); back to the idle ones only
        when its last call was read to the end (one cut short may still run: never reused)."""
        async with self._sessions:
            shell = self._idle.pop() if self._idle else await self._new_shell()
            try:
                yield shell
            except BaseException:
                shell.close()  # whatever went wrong, a shell that saw it is never reused
                raise
            if shell.pending:
                shell.close()
            else:
                self._idle.append(shell)

    async def _call(self, aw: Awaitable[T], what: str) -> T:
        """A read from a shell, its failures in this host's words."""
        try:
            return await aw
        except TimeoutError as exc:  # the shell is left pending: never reused
            raise RemoteCommandFailed(self.name, what, None, "", "timed out") from exc
        except (asyncssh.Error, OSError, EOFError) as exc:
            self._lost()
            raise ExecutorError(self.name, f"SSH session failed: {exc or type(exc).__name__}") from exc

    def _lost(self) -> None:
        """The connection failed: it and every idle shell on it are dropped, the next call opens anew."""
        for shell in self._idle:
            shell.close()
        self._idle.clear()
        self._conn = None

    def _begin(self, shell: Shell, script: str, mode: str) -> None:
        """Write a call to a shell; a closed channel in this host's words (as `_call` reads them)."""
        try:
            shell.begin(script, mode=mode)
        except (asyncssh.Error, OSError) as exc:
            self._lost()
            raise ExecutorError(self.name, f"SSH session failed: {exc or type(exc).__name__}") from exc

    async def _run(self, script: str, timeout: float | None = None, *, mode: str = "sub") -> str:
        limit = timeout or self.target.command_timeout
        first = script.strip().splitlines()[0][:60]
        async with self._lease() as shell:
            rc, out = await self._call(shell.run(script, limit, mode=mode), first)
        if rc != 0:
            raise RemoteCommandFailed(self.name, first, rc, "")
        return out

    async def _new_shell(self) -> Shell:
        conn = await self._connection()
        try:
            # the login shell (and its rc files) runs once here, not once per step
            proc = await conn.create_process(self._shell, encoding="utf-8")
            await proc.stdin.drain()
        except (asyncssh.Error, OSError) as exc:
            self._conn = None
            raise ExecutorError(self.name, f"SSH session failed: {exc}") from exc
        shell = Shell(proc)
        # the functions live in the shell, for every call after
        try:
            limit = self.target.command_timeout
            _, out = await self._call(shell.run(scripts.FUNCS, limit, mode="raw"), "setup")
        except BaseException:
            shell.close()
            raise
        setup = out.strip().rsplit("\n", 1)[-1].split()
        if len(setup) != 4 or setup[0] != "@@SETUP":
            shell.close()
            raise ExecutorError(self.name, f"the remote shell did not set up: {out.strip()[-200:]!r}")
        self._clock = (float(setup[1] or 0), float(setup[2] or 100))
        self._ss = setup[3] == "ss"
        return shell

    def _ticks(self, start_time: float) -> int:
        btime, hz = self._clock or (0.0, 100.0)
        return round((start_time - btime) * hz)

    def _keys(self, addresses: list[str], ports: tuple[int, ...]) -> str:
        """`held`'s arguments: the ports, then the local addresses that hold them as lst prints them."""
        keys = parse.ss_keys(addresses, ports) if self._ss else procfs.table_keys(addresses, ports)
        return " ".join([shlex.quote(" ".join(map(str, ports))), "--", *map(shlex.quote, keys)])

    async def facts(self, home_path: str, pid_file: str, ip: str, ports: tuple[int, ...]) -> Facts:
        wild = ip in procfs.WILDCARDS  # its own sockets, every listener: where it listens is asked
        keys = "" if wild or not self._ss else " ".join(parse.ss_keys([ip], ports))  # what on_address keeps
        q = shlex.quote
        every, listed = q("1" if wild else ""), " ".join(map(str, ports))
        line = f"facts {q(home_path)} {q(pid_file)} {every} {q(keys)} {listed}"
        out = parse.sections(await self._run(line, mode="buf"))
        resolve = out.get("RESOLVE", "").splitlines()
        found = parse.parse_pidfile(pid_file, out.get("PIDFILE", ""))
        listening = parse.parse_listeners(out.get("TCP", ""))
        pid = parse_pid(found.content or "") if found.content is not None else None
        process: ProcessFacts | None = None
        if pid:
            section = out.get("PROCESS", "")
            if section.split("\n", 1)[0].split()[1:2] == [str(pid)]:
                process = parse.parse_process(pid, section, listening)
            else:  # the shell read the pid file otherwise than parse_pid: ask about this pid itself
                process = await self.inspect(pid)
        listeners = procfs.on_address(listening, ip, ports)
        resolved = Resolved(resolve[0], resolve[1], resolve[2:3] == ["HOME"], resolve[3:4] == ["BIN"])
        return Facts(resolved, found, listeners, process)

    async def inspect(self, pid: int) -> ProcessFacts | None:
        out = await self._run(f"inspect {int(pid)} '' 1\necho @@TCP\nlst", mode="buf")
        head, _, tcp = out.partition("@@TCP\n")
        return parse.parse_process(pid, head, parse.parse_listeners(tcp))

    async def send_signal(self, pid: int, sig: signal.Signals, start_time: float) -> bool:
        name = sig.name.removeprefix("SIG")
        out = await self._run(f"sig {int(pid)} {self._ticks(start_time)} {name}", mode="fn")
        return out.strip() == "SENT"

    async def wait_exit(self, pid: int, start_time: float, timeout: float) -> bool:
        rounds = max(1, int(timeout / 0.012))
        limit = timeout + self.target.command_timeout
        out = await self._run(f"waitx {int(pid)} {self._ticks(start_time)} {rounds}", limit, mode="fn")
        return out.strip() == "GONE"

    def _settle_args(
        self,
        exit_timeout: float,
        addresses: list[str],
        ports: tuple[int, ...],
        port_timeout: float,
    ) -> str:
        rounds = max(1, int(exit_timeout / 0.012))
        return f"{rounds} {max(0, round(port_timeout * 100))} {self._keys(addresses, ports)}"

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
        rounds, port_cs, keys = self._settle_args(exit_timeout, addresses, ports, port_timeout).split(" ", 2)
        line = (
            f"settle {int(pid)} {self._ticks(start_time)} {rounds} {port_cs} {shlex.quote(pid_file or '')} "
            f"{shlex.quote((expected or '').strip())} {keys}"
        )
        limit = exit_timeout + port_timeout + self.target.command_timeout
        out = await self._run(line, limit, mode="fn")
        return _settled(out)

    @contextlib.asynccontextmanager
    async def signal_trip(
        self,
        proved: ProcessFacts,
        resolved: Resolved,
        exit_timeout: float,
        addresses: list[str],
        ports: tuple[int, ...],
        port_timeout: float,
        pid_file: str | None,
        expected: str | None,
    ) -> AsyncIterator[_Trip]:
        q = shlex.quote
        head = f"{int(proved.pid)} {self._ticks(proved.start_time)}"
        tail = " ".join(
            [
                q(proved.exe or ""),
                q(proved.cwd or ""),
                q(_cmd_check(proved, resolved)),
                q(pid_file or ""),
                q((expected or "").strip()),
                self._settle_args(exit_timeout, addresses, ports, port_timeout),
            ]
        )
        async with self._lease() as shell:
            yield _Trip(self, shell, (head, tail), exit_timeout + port_timeout + self.target.command_timeout)

    async def listeners(self, ip: str, ports: tuple[int, ...]) -> list[Listener]:
        text = await self._run("lst " + " ".join(map(str, ports)), mode="fn")  # LISTEN lines on ports only
        return procfs.on_address(parse.parse_listeners(text), ip, ports)

    async def socket_owners(self, inodes: set[int]) -> dict[int, int]:
        owners: dict[int, int] = {}
        for line in (await self._run(scripts.OWNERS)).splitlines():
            pid_text, _, link = line.partition(" ")
            for inode in procfs.socket_inodes([link]) & inodes:
                owners[inode] = int(pid_text)
        return owners

    async def remove_pid_file(self, path: str, expected: str) -> bool:
        f, want = shlex.quote(path), shlex.quote(expected.strip())
        out = await self._run(
            f'f={f}; [ -L "$f" ] && exit 0\n'
            f'pidtext "$f" && [ "$P" = {want} ] && rm -f -- "$f" && echo REMOVED; true'
        )
        return out.strip() == "REMOVED"

    async def launch(self, home_path: str, timeout: float) -> Launch:
        try:
            out = await self._run(scripts.LAUNCH.format(home=shlex.quote(home_path)), timeout=timeout)
        except RemoteCommandFailed as exc:
            if "timed out" in str(exc):
                return Launch(user=self.target.user, exit_status=None, output="")
            raise
        head, _, rest = out.partition("\n")
        if head.startswith("@@REFUSED "):
            raise LaunchRefused(self.name, head[len("@@REFUSED ") :])
        user = head.removeprefix("@@USER ").strip()
        status_line, _, output = rest.partition("\n")
        status = status_line.removeprefix("@@EXIT ").strip()
        return Launch(user=user, exit_status=int(status) if status.isdigit() else None, output=output)

    async def read_tail(self, path: str, max_bytes: int = 2000) -> str:
        try:
            return await self._run(f"tail -c {int(max_bytes)} -- {shlex.quote(path)} 2>/dev/null; true")
        except ExecutorError:
            return ""

    async def close(self) -> None:
        for shell in self._idle:
            shell.close()
        self._idle.clear()
        if self._conn is not None:
            self._conn.close()
            await self._conn.wait_closed()
            self._conn = None
