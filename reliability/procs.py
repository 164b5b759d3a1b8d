"""Processes the trials start and the waits on them: polls of another process's state, bounded, without
idle sleeps longer than a poll; a Mosquitto of the trial's own; a PostgreSQL instance of its own."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import psutil

from obstop.fakes.net import free_port


class TrialError(Exception):
    """The world of a trial could not be set up or driven (not a finding about obstop)."""


def until(cond: Callable[[], bool], what: str, timeout: float, every: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise TrialError(f"{what} (after {timeout:g}s)")
        time.sleep(every)


def port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def alive(pid: int) -> bool:
    """True while pid runs (a zombie counts as gone)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for obstop processes: this checkout first on the path, JSON logs."""
    env = dict(os.environ)
    src = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["OBSTOP_LOG_FORMAT"] = "console"
    return {**env, **(extra or {})}


def obstop(*args: str) -> list[str]:
    return [sys.executable, "-m", "obstop", *args]


def kill_under(root: Path) -> int:
    """SIGKILL what runs in root and names a path inside it on its command line (a trial's own processes,
    never an operator's shell or another helper's). Returns how many."""
    inside = str(root.resolve()) + os.sep
    n = 0
    for proc in psutil.process_iter():
        try:
            if proc.pid == os.getpid():
                continue
            if proc.cwd().startswith(inside) and any(inside in a for a in proc.cmdline()):
                proc.kill()
                n += 1
        except psutil.Error:
            continue
    return n


class Mosquitto:
    """The trial's broker: killed (SIGKILL) and started again on the same port by R3."""

    def __init__(self, root: Path, bind: str = "127.0.0.1") -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.root, self.port = root, free_port()
        user = f"user {psutil.Process().username()}\n" if os.geteuid() == 0 else ""
        self.conf = root / "mosquitto.conf"
        self.conf.write_text(
            f"listener {self.port} {bind}\nallow_anonymous true\npersistence false\n"
            f"log_dest file {root}/mosquitto.log\n{user}"
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def url(self, host: str = "127.0.0.1") -> str:
        return f"mqtt://{host}:{self.port}"

    def start(self) -> Mosquitto:
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        self.proc = subprocess.Popen(
            [binary, "-c", str(self.conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        until(lambda: port_open("127.0.0.1", self.port), "mosquitto did not listen", 10)
        return self

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
            self.proc = None


PG_BIN = sorted(Path("/usr/lib/postgresql").glob("*/bin"))


class OwnPostgres:
    """A PostgreSQL instance of the trial's own (initdb in its directory, as user postgres, on a free
    port), so restarting it never touches the shared server other work uses."""

    def __init__(self) -> None:
        if not PG_BIN:
            raise TrialError("no PostgreSQL binaries under /usr/lib/postgresql")
        # in /tmp itself: user postgres cannot reach into a trial's directory (pytest's is 0700)
        self.root = Path(tempfile.mkdtemp(prefix="obstop-reliability-pg-"))
        self.bin, self.data, self.port = PG_BIN[-1], self.root / "pgdata", free_port()
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres")
        self.log = self.root / "postgres.log"

    def _as_postgres(self, *argv: str, timeout: float = 60) -> None:
        cmd = ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else list(argv)
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
        if res.returncode != 0:
            raise TrialError(f"{argv[0]} failed: {res.stderr.strip()[-300:]}")

    def init(self) -> OwnPostgres:
        self._as_postgres(str(self.bin / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres")
        return self.start()

    def start(self) -> OwnPostgres:
        opts = f"-p {self.port} -k /tmp -c listen_addresses=127.0.0.1 -c fsync=off"
        self._as_postgres(
            str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-o", opts, "-w", "start"
        )
        return self

    def stop(self, mode: str = "fast") -> None:
        self._as_postgres(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
