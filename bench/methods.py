"""The methods the side by side runs on the same fake hosts, each as `run(i) -> row`.

Every row has `seconds` (the stop, as its user waits for it), `failed`, `unreachable` and `cpu_s` (per
process group: controller, agents, mosquitto, sshd with its sessions and their commands, and the client:
the benchmark's process plus the children it waited for). sidebyside.py adds the end-state check.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncssh
import tomli_w

from bench import bare_ssh, floor
from bench.common import Broker
from bench.cpu import Meter
from bench.sshfleet import SshFleet
from bench.stopcall import stop_via_controller
from obstop.fakes import hosts as fakehosts

Run = Callable[[int], dict[str, Any]]


@dataclass
class Setup:
    """What every method shares for one fleet size."""

    fleet: fakehosts.Fleet
    work: Path
    ssh: SshFleet
    broker: Broker

    def groups(self) -> dict[str, list[int]]:
        return {
            "agents": [h.agent_pid for h in self.fleet.hosts if h.agent_pid],
            "mosquitto": [self.broker.pid],
            "sshd": self.ssh.pids,
        }

    def timed(self, body: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        meter = Meter(self.groups())
        t0 = time.monotonic()
        counts = body()
        took = time.monotonic() - t0
        return {"seconds": took, **counts, "cpu_s": meter.delta()}

    def spec(self) -> dict[str, Any]:
        return {
            "identity": str(self.ssh.key),
            "known_hosts": str(self.ssh.known_hosts),
            "hosts": [{"ip": h.ip, "port": 22, "home": h.home} for h in self.fleet.hosts],
        }


def via_agents(s: Setup) -> Run:
    return lambda i: stop_via_controller(s.work / "controller.toml", s.work, f"agents-{i}", s.groups())


def agentless_ssh(s: Setup) -> Run:
    cfg = tomllib.loads((s.work / "controller.toml").read_text())
    cfg.pop("mqtt")
    cfg["agentless"] = {
        "ssh": [
            {
                "host": h.host,
                "address": h.ip,
                "port": 22,
                "user": "root",
                "identity": str(s.ssh.key),
                "known_hosts": str(s.ssh.known_hosts),
            }
            for h in s.fleet.hosts
        ]
    }
    config = s.work / "controller-ssh.toml"
    config.write_text(tomli_w.dumps(cfg))
    # a controller holds its connections: the stop call comes once it has connected and probed (its watch)
    return lambda i: stop_via_controller(config, s.work, f"ssh-{i}", s.groups(), idle_first=True)


def bare_process(s: Setup) -> Run:
    """The ~40-line script as its own process: interpreter start and imports included."""
    spec = s.work / "bare-spec.json"
    spec.write_text(json.dumps(s.spec()))

    def body() -> dict[str, Any]:
        res = subprocess.run(
            [sys.executable, bare_ssh.__file__, str(spec)], capture_output=True, text=True, check=False
        )
        if res.returncode != 0:
            return {"failed": len(s.fleet.hosts), "unreachable": 0, "error": res.stderr[-400:]}
        counts: dict[str, int] = json.loads(res.stdout)
        return counts

    return lambda i: s.timed(body)


def bare_inprocess(s: Setup) -> Run:
    """The same script's coroutine in this process: connections and work only."""
    spec = s.spec()
    return lambda i: s.timed(lambda: asyncio.run(bare_ssh.stop_all(spec)))


def serial_ssh(s: Setup) -> Run:
    """What OBD's stop plugin does: one server after another, a new connection each."""

    async def stop_all() -> dict[str, int]:
        failed = unreachable = 0
        for h in s.fleet.hosts:
            try:
                async with asyncssh.connect(
                    h.ip,
                    22,
                    username="root",
                    client_keys=[str(s.ssh.key)],
                    known_hosts=str(s.ssh.known_hosts),
                    config=None,
                ) as conn:
                    res = await conn.run(bare_ssh.script(h.home, h.ip), check=False)
                    failed += res.exit_status != 0
            except (OSError, asyncssh.Error):
                unreachable += 1
        return {"failed": failed, "unreachable": unreachable}

    return lambda i: s.timed(lambda: asyncio.run(stop_all()))


def ansible(s: Setup, exe: str) -> Run:
    """Ansible ad-hoc, `shell` module, forks=30; ControlPersist keeps its connections between runs (warm)."""
    inv = s.work / "ansible-inventory.ini"
    inv.write_text(
        "[fleet]\n"
        + "".join(
            f"{h.host} ansible_host={h.ip} ansible_port=22 ansible_user=root "
            f"ansible_ssh_private_key_file={s.ssh.key} home={h.home} "
            f"hexip={bare_ssh.hexip(h.ip)}\n"
            for h in s.fleet.hosts
        )
    )
    cfg = s.work / "ansible.cfg"
    cfg.write_text(
        f"[defaults]\nforks = 30\nhost_key_checking = True\ninterpreter_python = {sys.executable}\n"
        f"[ssh_connection]\ncontrol_path_dir = {s.work / 'cp'}\n"
        f"ssh_args = -o UserKnownHostsFile={s.ssh.known_hosts} -o StrictHostKeyChecking=yes "
        "-o ControlMaster=auto -o ControlPersist=600s\n"
    )
    cmd = bare_ssh.SCRIPT.replace("{home}", "{{ home }}").replace("{hexip}", "{{ hexip }}")
    env = {"ANSIBLE_CONFIG": str(cfg), "ANSIBLE_LOCAL_TEMP": str(s.work / "ansible-tmp")}

    def body() -> dict[str, Any]:
        res = subprocess.run(
            [exe, "fleet", "-i", str(inv), "-f", "30", "-m", "shell", "-a", cmd],
            capture_output=True,
            text=True,
            env={**os.environ, **env},
            check=False,
        )
        out: dict[str, Any] = {
            "failed": res.stdout.count("| FAILED"),
            "unreachable": res.stdout.count("| UNREACHABLE"),
        }
        if res.returncode != 0:
            out["error"] = (res.stdout + res.stderr)[-400:]
        return out

    return lambda i: s.timed(body)


def local_floor(s: Setup) -> Run:
    hosts = [(h.ip, h.home) for h in s.fleet.hosts]
    return lambda i: s.timed(lambda: floor.stop_all(hosts))
