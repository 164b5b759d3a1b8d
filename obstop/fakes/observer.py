"""A fake observer: a real process that looks and behaves like OceanBase's `observer` to a stopper.

It runs in HOME, writes HOME/run/observer.pid and holds a lockf lock on it, listens on its SQL and RPC
ports on its own address, logs to HOME/log/observer.log, and by default dies at once on SIGTERM
leaving the pid file behind (observer's signal thread turns SIGTERM into SIGKILL). Misbehaviours for
tests: ignore SIGTERM, exit slowly, leave a port held by a child for a while.

Like observer, its first start (with arguments) persists them in HOME/etc/observer.config.bin, and
`cd HOME && ./bin/observer` with no arguments starts it again from there, daemonizing the same way.

Only the standard library is imported here (and the SQL endpoint lazily), so it starts fast.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import json
import os
import signal
import socket
import sys
import time
from pathlib import Path


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="observer", description="fake OceanBase observer")
    p.add_argument("--ip", default="127.0.0.1")
    p.add_argument("-p", "--sql-port", type=int, default=2881)
    p.add_argument("-P", "--rpc-port", type=int, default=2882)
    p.add_argument("--zone", default="zone1")
    p.add_argument("--cluster-dir", default=None, help="shared state of the fake cluster (SQL answers)")
    p.add_argument("--daemonize", action="store_true", help="detach like observer; exit once ready")
    p.add_argument("--sql-refuse", action="store_true", help="accept and drop every SQL connection")
    p.add_argument("--ignore-sigterm", action="store_true")
    p.add_argument(
        "--leave-home-on-term",
        action="store_true",
        help="on SIGTERM, chdir to / first (its identity can no longer be proved while it exits)",
    )
    p.add_argument("--exit-delay", type=float, default=0.0, help="seconds between SIGTERM and exit")
    p.add_argument(
        "--start-delay",
        type=float,
        default=0.0,
        help="seconds between detaching (pid file written) and listening, like a slow restart",
    )
    p.add_argument(
        "--linger-child",
        type=float,
        default=0.0,
        help="on SIGTERM a child keeps the ports for this many seconds",
    )
    return p.parse_args(argv)


def _log(msg: str) -> None:
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    print(f"[{stamp}] [pid {os.getpid()}] {msg}", flush=True)


def _daemonize(log_path: Path) -> int:
    """Double fork. Returns the write end of a pipe that tells the launcher we are ready (-1 in it)."""
    r, w = os.pipe()
    if os.fork() > 0:  # the launcher: wait until the daemon says it is ready
        os.close(w)
        data = os.read(r, 512)
        if not data.startswith(b"OK"):
            sys.stderr.write(data.decode(errors="replace") or "observer died before it was ready\n")
            os._exit(1)
        os._exit(0)
    os.close(r)
    os.setsid()
    if os.fork() > 0:
        os._exit(0)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    out = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(out, 1)
    os.dup2(out, 2)
    return w


def _listen(ip: str, port: int) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((ip, port))
    s.listen(128)
    s.setblocking(False)
    return s


async def _rpc_handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.close()


def _greeting(connection_id: int) -> bytes:
    """A MySQL protocol-10 handshake, as observer's SQL port sends first (then we hang up)."""
    salt = os.urandom(20)
    body = (
        b"\x0a"
        + b"5.7.25-OceanBase_CE-v4.2.1.0-fake\x00"
        + connection_id.to_bytes(4, "little")
        + salt[:8]
        + b"\x00"
        + (0xF7FF).to_bytes(2, "little")
        + b"\x2d"
        + (0x0002).to_bytes(2, "little")
        + (0x81FF).to_bytes(2, "little")
        + bytes([21])
        + b"\x00" * 10
        + salt[8:]
        + b"\x00"
        + b"mysql_native_password\x00"
    )
    return len(body).to_bytes(3, "little") + b"\x00" + body


async def _sql_greeter(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(_greeting(os.getpid() & 0xFFFFFFFF))
    with contextlib.suppress(OSError):
        await writer.drain()
    writer.close()


async def _serve(args: argparse.Namespace, sql: socket.socket, rpc: socket.socket, ready: int) -> None:
    loop = asyncio.get_running_loop()

    def die() -> None:
        _log("exiting (SIGKILL by own signal thread, as observer does)")
        os.kill(os.getpid(), signal.SIGKILL)

    def on_term() -> None:
        _log("received SIGTERM")
        if args.cluster_dir:
            # synchronously, before dying: tests compare it with the freeze (a few ms of SQLite)
            from obstop.fakes.cluster import FakeCluster

            FakeCluster(Path(args.cluster_dir)).record(f"{args.ip}:{args.sql_port}", "SIGNAL SIGTERM")
        if args.leave_home_on_term:
            os.chdir("/")
        if args.ignore_sigterm:
            _log("ignoring SIGTERM")
            return
        if args.linger_child > 0 and os.fork() == 0:
            # the child keeps the inherited listening sockets open for a while
            time.sleep(args.linger_child)
            os._exit(0)
        if args.exit_delay > 0:
            loop.call_later(args.exit_delay, die)
        else:
            die()

    loop.add_signal_handler(signal.SIGTERM, on_term)
    rpc_server = await asyncio.start_server(_rpc_handler, sock=rpc)
    sql_server: object
    if args.cluster_dir:
        from obstop.fakes.sql import serve_sql  # only fake clusters need the MySQL protocol

        sql_server = await serve_sql(sql, Path(args.cluster_dir), args)
    else:
        sql_server = await asyncio.start_server(_sql_greeter, sock=sql)
    _log(f"observer ready on {args.ip} sql {args.sql_port} rpc {args.rpc_port}")
    if ready >= 0:
        os.write(ready, b"OK")
        os.close(ready)
    async with rpc_server:
        assert sql_server is not None  # kept referenced while serving
        await asyncio.Event().wait()


CONFIG = Path("etc") / "observer.config.bin"


def _arguments(home: Path, argv: list[str]) -> list[str] | None:
    """The arguments to run with: those given (persisted for the next start), else those persisted."""
    config = home / CONFIG
    if argv:
        config.parent.mkdir(exist_ok=True)
        tmp = config.with_suffix(".tmp")
        tmp.write_text(json.dumps(argv))
        tmp.replace(config)
        return argv
    try:
        found = json.loads(config.read_text())
    except (OSError, ValueError):
        return None
    return [str(a) for a in found] if isinstance(found, list) else None


def main(argv: list[str] | None = None) -> int:
    home = Path.cwd()
    given = _arguments(home, sys.argv[1:] if argv is None else argv)
    if given is None:
        sys.stderr.write(f"observer: no arguments and no readable {home / CONFIG} to start from\n")
        return 1
    args = parse_args(given)
    (home / "run").mkdir(exist_ok=True)
    (home / "log").mkdir(exist_ok=True)
    ready = _daemonize(home / "log" / "observer.log") if args.daemonize else -1

    def fail(msg: str) -> int:
        _log(msg)
        if ready >= 0:
            os.write(ready, msg.encode() + b"\n")
        return 1

    fd = os.open(home / "run" / "observer.pid", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return fail(f"another observer holds {home}/run/observer.pid")
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    _log(f"observer starting in {home}")
    if args.start_delay > 0:
        # a slow restart (replaying its log): the launcher returns now, the ports come later
        if ready >= 0:
            os.write(ready, b"OK")
            os.close(ready)
            ready = -1
        time.sleep(args.start_delay)
    try:
        sql, rpc = _listen(args.ip, args.sql_port), _listen(args.ip, args.rpc_port)
    except OSError as exc:
        return fail(f"cannot listen on {args.ip}: {exc}")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(args, sql, rpc, ready))
    return 0


if __name__ == "__main__":
    sys.exit(main())
