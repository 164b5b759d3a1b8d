"""Test helpers: unique loopback addresses, free ports, real sshd, process checks. No mocks."""

from __future__ import annotations

import itertools
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil

# each test gets its own 127.x.y.z so fake observers can all use ports 2881/2882
_ips = itertools.count((os.getpid() % 200) * 250 + 1)


def fresh_ip() -> str:
    n = next(_ips)
    return f"127.{10 + (n // 62500) % 200}.{(n // 250) % 250 + 1}.{n % 250 + 1}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def wait_dead(pid: int, timeout: float = 10.0) -> None:
    """Block until pid has exited (a zombie counts), by waiting on its pidfd."""
    import select

    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    try:
        select.select([fd], [], [], timeout)
    finally:
        os.close(fd)
    assert not alive(pid), f"pid {pid} still alive after {timeout}s"


def wait_port(host: str, port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def kill_tree_under(root: Path) -> None:
    """Kill any process whose cwd is under root (fake observers and their children left by a test)."""
    prefix = str(root.resolve())
    killed = []
    for proc in psutil.process_iter():
        try:
            if proc.cwd().startswith(prefix):
                proc.send_signal(signal.SIGKILL)
                killed.append(proc.pid)
        except psutil.Error:
            continue
    for pid in killed:
        wait_dead(pid)


@dataclass(frozen=True)
class Sshd:
    port: int
    user: str
    identity: Path
    known_hosts: Path
    bad_identity: Path
    wrong_known_hosts: Path


def _keygen(path: Path, kind: str = "ed25519") -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", kind, "-N", "", "-f", str(path)], check=True)


def sshd_binary() -> str | None:
    return shutil.which("sshd") or (str(p) if (p := Path("/usr/sbin/sshd")).exists() else None)


def start_sshd(root: Path, max_startups: int = 10, max_sessions: int = 10) -> Iterator[Sshd]:
    """A real OpenSSH sshd on 127.0.0.1 and every loopback address, on a free port."""
    binary = sshd_binary()
    assert binary, "OpenSSH sshd is not installed (apt-get install openssh-server)"
    root.mkdir(parents=True, exist_ok=True)
    host_key, client, stranger, other_host = (root / n for n in ("host", "client", "stranger", "other"))
    for key in (host_key, client, stranger, other_host):
        _keygen(key)
    auth = root / "authorized_keys"
    auth.write_text((root / "client.pub").read_text())
    auth.chmod(0o600)
    port = free_port()
    config = root / "sshd_config"
    config.write_text(
        f"Port {port}\nListenAddress 0.0.0.0\nHostKey {host_key}\nAuthorizedKeysFile {auth}\n"
        f"PidFile {root}/sshd.pid\nStrictModes no\nUsePAM no\nPasswordAuthentication no\n"
        f"KbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\n"
        f"MaxStartups {max_startups}\nMaxSessions {max_sessions}\nLogLevel ERROR\n"
        "Subsystem sftp internal-sftp\n"
    )
    Path("/run/sshd").mkdir(exist_ok=True)
    proc = subprocess.Popen([binary, "-D", "-e", "-f", str(config)], stderr=open(root / "sshd.log", "w"))
    host_pub = (root / "host.pub").read_text().split()
    other_pub = (root / "other.pub").read_text().split()
    known, wrong = root / "known_hosts", root / "wrong_known_hosts"
    # a pattern that covers every loopback address this test run uses
    known.write_text(f"[127.*]:{port} {host_pub[0]} {host_pub[1]}\n")
    wrong.write_text(f"[127.*]:{port} {other_pub[0]} {other_pub[1]}\n")
    try:
        wait_port("127.0.0.1", port)
        yield Sshd(
            port, os.environ.get("USER") or psutil.Process().username(), client, known, stranger, wrong
        )
    finally:
        proc.terminate()
        proc.wait(5)


class Mosquitto:
    """A real Mosquitto on a free loopback port with its own config (and its own log)."""

    def __init__(self, root: Path, extra: str = "", anonymous: bool = True) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.conf = root / "mosquitto.conf"
        self.conf.write_text(
            f"per_listener_settings false\nlistener {self.port} 127.0.0.1\n"
            f"allow_anonymous {'true' if anonymous else 'false'}\npersistence false\n"
            f"log_dest file {root}/mosquitto.log\n{extra}"
            # as root, mosquitto would switch to user mosquitto, who cannot read the test's temp dirs
            + (f"user {psutil.Process().username()}\n" if os.geteuid() == 0 else "")
        )
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> Mosquitto:
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        self.proc = subprocess.Popen(
            [binary, "-c", str(self.conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        wait_port("127.0.0.1", self.port)
        return self

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()
