"""The SSH executor: the same primitives as the local one, answered by a POSIX shell and /proc remotely
(the scripts are in ssh_scripts.py); `settle` does the wait after a signal in one trip.

One connection per host, reused; at most `max_sessions` channels on it at once (OpenSSH's MaxSessions
is 10) and a shared limit on concurrent handshakes (sshd's MaxStartups drops the rest). Host keys are
checked against known_hosts; every remote call runs under a timeout. No Python is needed remotely.
"""

from __future__ import annotations

import asyncio
import secrets
import shlex
import signal

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
from obstop.agent.executors import ssh_scripts as scripts
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
from obstop.agent.executors.ssh_config import SSHHostConfig


class _Shell:
    """A resident /bin/sh on the remote host. Each script runs in a subshell (so `exit` ends only it),
    its output is read up to an end marker that carries a per-script nonce and the exit status."""

    def __init__(self, proc: asyncssh.SSHClientProcess[str]) -> None:
        self.proc = proc

    async def run(self, script: str, timeout: float, *, subshell: bool = True) -> tuple[int, str]:
        nonce = secrets.token_hex(8)
        marker = f"@@END {nonce} "
        body = f"(\n{script}\n) 2>/dev/null </dev/null" if subshell else f"{script}\ntrue"
        self.proc.stdin.write(f"{body}; printf '\\n{marker}%d\\n' $?\n")
        end = "\n" + marker  # the newline printed before the marker is not the script's
        async with asyncio.timeout(timeout):
            try:  # one read up to the marker, not one per line: a probe answers dozens of lines
                out = await self.proc.stdout.readuntil(end)
                status = await self.proc.stdout.readline()
            except asyncio.IncompleteReadError as exc:
                raise EOFError("remote shell closed") from exc
        if not status.endswith("\n"):
            raise EOFError("remote shell closed")
        return int(status.strip() or 1), out[: -len(end)]

    def close(self) -> None:
        self.proc.close()


def _parse_pidfile(path: str, out: str) -> PidFile:
    status, _, rest = out.partition("\n")
    if status == "MISSING":
        return PidFile(path, exists=False)
    if status == "DENIED":
        return PidFile(path, exists=True, error="Permission denied")
    inode_text, _, content_hex = rest.partition("\n")
    inode = int(inode_text) if inode_text.strip().isdigit() else None
    if status == "LINK":
        return PidFile(path, exists=True, is_symlink=True, inode=inode)
    try:
        content = bytes.fromhex(content_hex.strip()).decode("ascii", "replace")
    except ValueError:
        content = ""
    return PidFile(path, exists=True, content=content, inode=inode)


def _sections(out: str) -> dict[str, str]:
    parts: dict[str, str] = {}
    name = ""
    for line in out.split("\n"):  # not splitlines(): \x1e separates cmdline arguments
        if line.startswith("@@"):
            name = line[2:]
            parts[name] = ""
        elif name:
            parts[name] += line + "\n"
    return parts


class SSHHost:
    """One remote host. Safe to share between concurrent procedures."""

    def __init__(
        self,
        config: SSHHostConfig,
        *,
        handshakes: asyncio.Semaphore | None = None,
        max_sessions: int = 8,
    ) -> None:
        self.name = config.host
        self.target = config
        self._handshakes = handshakes or asyncio.Semaphore(8)
        self._sessions = asyncio.Semaphore(max_sessions)
        self._idle: list[_Shell] = []
        self._conn: asyncssh.SSHClientConnection | None = None
        self._connecting = asyncio.Lock()
        self._clock: tuple[float, float] | None = None  # (btime, CLK_TCK) of the remote kernel

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

    async def _run(self, script: str, timeout: float | None = None) -> str:
        """Run a script in one of this host's resident shells (at most max_sessions at once)."""
        limit = timeout or self.target.command_timeout
        first = script.strip().splitlines()[0][:60]
        async with self._sessions:
            shell = self._idle.pop() if self._idle else await self._new_shell()
            try:
                rc, out = await shell.run(script, limit)
            except TimeoutError as exc:
                shell.close()  # its script may still run: never reuse this shell
                raise RemoteCommandFailed(self.name, first, None, "", f"timed out after {limit:g}s") from exc
            except (asyncssh.Error, OSError, EOFError) as exc:
                shell.close()
                self._conn = None
                raise ExecutorError(self.name, f"SSH session failed: {exc or type(exc).__name__}") from exc
            self._idle.append(shell)
        if rc != 0:
            raise RemoteCommandFailed(self.name, first, rc, "")
        return out

    async def _new_shell(self) -> _Shell:
        conn = await self._connection()
        try:
            # the login shell (and its rc files) runs once here, not once per step
            proc = await conn.create_process(scripts.SHELL, encoding="utf-8")
            await proc.stdin.drain()
        except (asyncssh.Error, OSError) as exc:
            self._conn = None
            raise ExecutorError(self.name, f"SSH session failed: {exc}") from exc
        shell = _Shell(proc)
        # the functions live in the shell, for every script it runs after
        await shell.run(scripts.FUNCS, self.target.command_timeout, subshell=False)
        return shell

    async def facts(self, home_path: str, pid_file: str, ip: str, ports: tuple[int, ...]) -> Facts:
        out = _sections(
            await self._run(
                scripts.FACTS.format(
                    home=shlex.quote(home_path),
                    pid_file=shlex.quote(pid_file),
                    ports=" ".join(f"{p:04X}" for p in ports),  # all that is asked of listeners here
                )
            )
        )
        resolve = out.get("RESOLVE", "").splitlines()
        found = _parse_pidfile(pid_file, out.get("PIDFILE", ""))
        tcp = out.get("TCP", "")
        pid = parse_pid(found.content or "") if found.content is not None else None
        process = self._parse_process(pid, out.get("PROCESS", ""), tcp) if pid else None
        listeners = procfs.on_address(procfs.parse_net_tcp(tcp), ip, ports)
        resolved = Resolved(resolve[0], resolve[1], resolve[2:3] == ["HOME"], resolve[3:4] == ["BIN"])
        return Facts(resolved, found, listeners, process)

    async def inspect(self, pid: int) -> ProcessFacts | None:
        out = await self._run(f"inspect {int(pid)}\necho @@TCP\nlst")
        head, _, tcp = out.partition("@@TCP\n")
        return self._parse_process(pid, head, tcp)

    def _parse_process(self, pid: int, out: str, tcp_text: str) -> ProcessFacts | None:
        if out.startswith("NOPROC"):
            return None
        head, _, locks_text = out.partition("\nLOCKS\n")
        fields: dict[str, str] = {}
        for line in head.split("\n"):  # not splitlines(): \x1e separates cmdline args
            key, _, value = line.partition(" ")
            fields[key] = value
        state_ticks = fields.get("STAT", "").split()
        if len(state_ticks) != 2:
            return None  # exited while we looked
        state, ticks = state_ticks[0], int(state_ticks[1])
        btime, hz = float(fields.get("BTIME") or 0), float(fields.get("HZ") or 100)
        self._clock = (btime, hz)
        start = btime + ticks / hz
        if state == "Z":
            return ProcessFacts(pid=pid, start_time=start, zombie=True)
        uid = int(fields["UID"]) if fields.get("UID", "").isdigit() else None
        exe, cwd = fields.get("EXE") or None, fields.get("CWD") or None
        user = fields.get("USER") or None
        if exe is None:
            return ProcessFacts(
                pid=pid,
                start_time=start,
                zombie=False,
                uid=uid,
                user=user,
                access_error=f"permission denied reading /proc/{pid}/exe",
            )
        cmdline = tuple(x for x in fields.get("CMD", "").split("\x1e") if x)
        inodes = {int(x[8:-1]) for x in fields.get("FDS", "").split() if x.startswith("socket:[")}
        listeners = frozenset((x.ip, x.port) for x in procfs.parse_net_tcp(tcp_text) if x.inode in inodes)
        locked = procfs.parse_locks(locks_text).get(pid, set())
        return ProcessFacts(
            pid=pid,
            start_time=start,
            zombie=False,
            exe=exe,
            cwd=cwd,
            cmdline=cmdline,
            uid=uid,
            user=user,
            listeners=listeners,
            locked_inodes=frozenset(locked),
        )

    def _ticks(self, start_time: float) -> int:
        btime, hz = self._clock or (0.0, 100.0)
        return round((start_time - btime) * hz)

    async def send_signal(self, pid: int, sig: signal.Signals, start_time: float) -> bool:
        name = sig.name.removeprefix("SIG")
        out = await self._run(scripts.SIGNAL.format(pid=int(pid), ticks=self._ticks(start_time), sig=name))
        return out.strip() == "SENT"

    async def wait_exit(self, pid: int, start_time: float, timeout: float) -> bool:
        rounds = max(1, int(timeout / 0.012))
        script = scripts.WAIT.format(pid=int(pid), ticks=self._ticks(start_time), rounds=rounds)
        out = await self._run(script, timeout=timeout + self.target.command_timeout)
        return out.strip() == "GONE"

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
        script = scripts.SETTLE.format(
            pid=int(pid),
            ticks=self._ticks(start_time),
            rounds=max(1, int(exit_timeout / 0.012)),
            port_cs=max(0, round(port_timeout * 100)),
            keys=" ".join(shlex.quote(k) for k in procfs.table_keys(addresses, ports)),
            pid_file=shlex.quote(pid_file or ""),
            want=shlex.quote((expected or "").strip()),
        )
        out = await self._run(script, timeout=exit_timeout + port_timeout + self.target.command_timeout)
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

    async def listeners(self, ip: str, ports: tuple[int, ...]) -> list[Listener]:
        text = await self._run("lst " + " ".join(f"{p:04X}" for p in ports))  # LISTEN lines on ports only
        return procfs.on_address(procfs.parse_net_tcp(text), ip, ports)

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
            f'[ "$(dd if="$f" bs=64 count=1 2>/dev/null)" = {want} ] && rm -f -- "$f" && echo REMOVED; true'
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
