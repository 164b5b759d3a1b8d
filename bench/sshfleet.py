"""One OpenSSH sshd per fake host, on the host's own loopback address and port 22, as on real servers.

Root's ~/.bashrc on this machine runs `pyenv init`, and bash sources ~/.bashrc for every command run over
SSH when the shell it starts is at SHLVL < 2. A server's login shell is usually light, so by default every
sshd sets `SetEnv SHLVL=1` for its sessions: bash then starts at level 2 and skips the rc file. With
`heavy_rc` the sessions run root's rc file, as the first side-by-side did (a second, labelled table).
`login_check` shows which one the hosts got: the remote SHLVL and the time of `ssh HOST true`.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from bench.common import summary, wait_port

LIGHT = "SetEnv SHLVL=1\n"


@dataclass
class SshFleet:
    root: Path
    key: Path  # the client's private key (root's, for every host)
    known_hosts: Path
    heavy_rc: bool
    pids: list[int] = field(default_factory=list)  # one sshd listener per host
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def ssh_argv(self, ip: str) -> list[str]:
        """OpenSSH's client, strict about the host key, to root@ip."""
        opts = [f"UserKnownHostsFile={self.known_hosts}", "StrictHostKeyChecking=yes", "BatchMode=yes"]
        return ["ssh", "-i", str(self.key), *(x for o in opts for x in ("-o", o)), f"root@{ip}"]

    def stop(self) -> None:
        """The listeners and every session they still have (Ansible's ControlPersist ones too)."""
        procs: list[psutil.Process] = []
        for pid in self.pids:
            try:
                p = psutil.Process(pid)
                procs += [*p.children(recursive=True), p]
            except psutil.Error:
                continue
        for p in procs:
            try:
                p.terminate()
            except psutil.Error:
                continue
        _, alive = psutil.wait_procs(procs, timeout=10)
        for p in alive:
            try:
                p.kill()
            except psutil.Error:
                continue
        for proc in self.procs:
            proc.wait(10)


def start(root: Path, ips: list[str], heavy_rc: bool = False) -> SshFleet:
    root.mkdir(parents=True)
    for name in ("host", "client"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(root / name)], check=True)
    (root / "authorized_keys").write_text((root / "client.pub").read_text())
    kind, key = (root / "host.pub").read_text().split()[:2]
    (root / "known_hosts").write_text(f"{','.join(ips)} {kind} {key}\n")
    fleet = SshFleet(root, root / "client", root / "known_hosts", heavy_rc)
    Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege separation directory
    sshd = shutil.which("sshd") or "/usr/sbin/sshd"
    try:
        for ip in ips:
            d = root / ip
            d.mkdir()
            (d / "sshd_config").write_text(
                f"ListenAddress {ip}:22\nHostKey {root / 'host'}\n"
                f"AuthorizedKeysFile {root / 'authorized_keys'}\n"
                f"PidFile {d / 'sshd.pid'}\nStrictModes no\nUsePAM no\nPasswordAuthentication no\n"
                "KbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\nMaxStartups 100:30:200\n"
                f"MaxSessions 100\nLogLevel ERROR\n{'' if heavy_rc else LIGHT}"
            )
            with open(d / "sshd.log", "ab") as log:
                proc = subprocess.Popen([sshd, "-D", "-e", "-f", str(d / "sshd_config")], stderr=log)
            fleet.procs.append(proc)
            fleet.pids.append(proc.pid)
        for ip in ips:
            wait_port(22, ip)
    except BaseException:
        fleet.stop()
        raise
    return fleet


def login_check(fleet: SshFleet, ip: str, runs: int = 5) -> dict[str, Any]:
    """The remote shell's SHLVL (2: rc file skipped) and how long `ssh HOST true` takes, OpenSSH's client."""
    shlvl = subprocess.run(
        [*fleet.ssh_argv(ip), "echo $SHLVL"], capture_output=True, text=True, check=True, timeout=60
    ).stdout.strip()
    times = []
    for _ in range(runs):
        t0 = time.monotonic()
        subprocess.run([*fleet.ssh_argv(ip), "true"], check=True, timeout=60)
        times.append(time.monotonic() - t0)
    return {
        "login_shell": "heavy: root's ~/.bashrc" if fleet.heavy_rc else "light: SetEnv SHLVL=1, no rc file",
        "remote_SHLVL": shlvl,
        "rc_file_skipped": shlvl == "2",
        "ssh_true_s": summary(times),
    }
