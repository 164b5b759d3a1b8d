"""A real OpenSSH sshd on a free port, with generated keys, logging each login (LogLevel INFO)."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil

from obstop.fakes.net import free_port
from tests.support.processes import wait_port


@dataclass(frozen=True)
class Sshd:
    port: int
    user: str
    identity: Path
    known_hosts: Path
    bad_identity: Path  # a key sshd does not know
    wrong_known_hosts: Path  # names another key for this sshd
    log: Path

    def logins(self) -> int:
        """Successful logins so far: one per SSH connection a client opened."""
        return self.log.read_text().count("Accepted publickey for ")


def _keygen(path: Path, kind: str = "ed25519") -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", kind, "-N", "", "-f", str(path)], check=True)


def sshd_binary() -> str | None:
    return shutil.which("sshd") or (str(p) if (p := Path("/usr/sbin/sshd")).exists() else None)


def start_sshd(root: Path, max_startups: int = 10, max_sessions: int = 10) -> Iterator[Sshd]:
    """A real OpenSSH sshd on every loopback address, on a free port (a generator for a fixture)."""
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
        f"MaxStartups {max_startups}\nMaxSessions {max_sessions}\nLogLevel INFO\n"
        "Subsystem sftp internal-sftp\n"
    )
    Path("/run/sshd").mkdir(exist_ok=True)
    log = root / "sshd.log"
    with open(log, "w") as err:
        proc = subprocess.Popen([binary, "-D", "-e", "-f", str(config)], stderr=err)
    host_pub = (root / "host.pub").read_text().split()
    other_pub = (root / "other.pub").read_text().split()
    known, wrong = root / "known_hosts", root / "wrong_known_hosts"
    # a pattern that covers every loopback address this test run uses
    known.write_text(f"[127.*]:{port} {host_pub[0]} {host_pub[1]}\n")
    wrong.write_text(f"[127.*]:{port} {other_pub[0]} {other_pub[1]}\n")
    try:
        wait_port("127.0.0.1", port)
        user = os.environ.get("USER") or psutil.Process().username()
        yield Sshd(port, user, client, known, stranger, wrong, log)
    finally:
        proc.terminate()
        proc.wait(5)
