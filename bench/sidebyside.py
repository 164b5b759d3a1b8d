"""Side by side on the same 30 fake hosts: obstop through agents, obstop agentless over SSH, Ansible ad-hoc
(forks=30), and a serial SSH loop doing what OBD's stop plugin does (one server after another).

Every fake host is reachable over SSH at its own loopback address (one OpenSSH sshd listening on all of
them; MaxStartups and MaxSessions raised to 100 so that 30 parallel logins are not dropped). Each system
runs several times on freshly started observers; the first run is "cold", the rest "warm". The end state
is checked the same way for all: every observer process gone, both ports free, pid file removed.

    python -m bench.sidebyside --runs 3 --out bench/results/sidebyside.json [--ansible VENV/bin/ansible]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import asyncssh
import httpx
import psutil
import tomli_w

from bench.common import controller, mosquitto, summary, wait_port
from bench.parallel import restart_observers
from obstop.fakes import hosts as fakehosts
from obstop.fakes.net import free_block, free_port

# the same check, signal and waits as the agent, as a POSIX one-liner (for Ansible and the serial loop)
ONE_LINER = (
    "h={home}; f=$h/run/observer.pid; p=$(cat $f 2>/dev/null) || exit 0; "
    '[ -d /proc/$p ] && [ "$(readlink /proc/$p/cwd)" = "$h" ] && '
    'tr "\\000" " " < /proc/$p/cmdline | grep -q "$h/bin/observer" && kill $p; '
    "while [ -d /proc/$p ] && ! grep -q '^State:.*Z' /proc/$p/status 2>/dev/null; do sleep 0.05; done; "
    'while awk \'$4=="0A" && ($2=="{hexip}:0B41" || $2=="{hexip}:0B42")\' /proc/net/tcp | grep -q .; '
    "do sleep 0.05; done; rm -f $f"
)


def hexip(ip: str) -> str:
    return ipaddress.IPv4Address(ip).packed[::-1].hex().upper()


def start_sshd(root: Path) -> tuple[subprocess.Popen[bytes], int, Path, Path]:
    root.mkdir(parents=True)
    for name in ("host", "client"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(root / name)], check=True)
    (root / "authorized_keys").write_text((root / "client.pub").read_text())
    port = free_port()
    (root / "sshd_config").write_text(
        f"Port {port}\nListenAddress 0.0.0.0\nHostKey {root / 'host'}\n"
        f"AuthorizedKeysFile {root / 'authorized_keys'}\n"
        f"PidFile {root / 'sshd.pid'}\nStrictModes no\nUsePAM no\nPasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\nMaxStartups 100:30:200\n"
        "MaxSessions 100\nLogLevel ERROR\nSubsystem sftp internal-sftp\n"
    )
    Path("/run/sshd").mkdir(exist_ok=True)
    sshd = shutil.which("sshd") or "/usr/sbin/sshd"
    proc = subprocess.Popen([sshd, "-D", "-e", "-f", str(root / "sshd_config")], stderr=subprocess.DEVNULL)
    wait_port(port)
    key = (root / "host.pub").read_text().split()
    known = root / "known_hosts"
    known.write_text(f"[127.*]:{port} {key[0]} {key[1]}\n")
    return proc, port, root / "client", known


def end_state(fleet: fakehosts.Fleet) -> dict[str, int]:
    alive = ports = pidfiles = 0
    for h in fleet.hosts:
        with contextlib.suppress(psutil.NoSuchProcess):
            alive += psutil.Process(h.observer_pid).status() != psutil.STATUS_ZOMBIE
        for port in (2881, 2882):
            with socket.socket() as s:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    s.bind((h.ip, port))
                except OSError:
                    ports += 1
        pidfiles += (Path(h.home) / "run" / "observer.pid").exists()
    return {"alive": alive, "ports_held": ports, "pid_files_left": pidfiles}


def via_controller(config: Path, d: Path, label: str) -> Callable[[int], dict[str, Any]]:
    cfg = tomllib.loads(config.read_text())
    port = int(cfg["api"]["listen"].rsplit(":", 1)[1])
    password = (d / "admin.password").read_text().strip()

    def run(i: int) -> dict[str, Any]:
        os.environ["OBSTOP_STORE__URL"] = f"sqlite:///{d}/state/{label}-{i}.db"
        try:
            with controller(config, d / f"{label}-{i}.log", port):
                http = httpx.Client(base_url=f"http://127.0.0.1:{port}", auth=("admin", password), timeout=60)
                t0 = time.monotonic()
                http.post("/api/v2/ob/clusters/1/stop", json={"freeze": False})
                while (task := http.get("/api/v2/tasks/instances?clusterId=1").json()["data"]["contents"][0])[
                    "status"
                ] == "RUNNING":
                    time.sleep(0.005)
                took = time.monotonic() - t0
                full = http.get(f"/api/v2/tasks/instances/{task['id']}").json()["data"]
                failed = sum(1 for s in full["tasks"] if s["status"] == "FAILED")
        finally:
            del os.environ["OBSTOP_STORE__URL"]
        return {"seconds": took, "failed": failed, "unreachable": 0}

    return run


def via_ansible(
    ansible: str, fleet: fakehosts.Fleet, port: int, key: Path, known: Path, d: Path
) -> Callable[[int], dict[str, Any]]:
    inv = d / "ansible-inventory.ini"
    inv.write_text(
        "[fleet]\n"
        + "".join(
            f"{h.host} ansible_host={h.ip} ansible_port={port} ansible_user=root "
            f"ansible_ssh_private_key_file={key} "
            f"home={h.home} hexip={hexip(h.ip)}\n"
            for h in fleet.hosts
        )
    )
    cfg = d / "ansible.cfg"
    cfg.write_text(
        f"[defaults]\nforks = 30\nhost_key_checking = True\ninterpreter_python = {sys.executable}\n"
        f"[ssh_connection]\nssh_args = -o UserKnownHostsFile={known} -o StrictHostKeyChecking=yes "
        "-o ControlMaster=auto -o ControlPersist=60s\n"
    )
    cmd = ONE_LINER.replace("{home}", "{{ home }}").replace("{hexip}", "{{ hexip }}")

    def run(i: int) -> dict[str, Any]:
        env = {**os.environ, "ANSIBLE_CONFIG": str(cfg), "ANSIBLE_LOCAL_TEMP": str(d / "ansible-tmp")}
        t0 = time.monotonic()
        res = subprocess.run(
            [ansible, "fleet", "-i", str(inv), "-f", "30", "-m", "shell", "-a", cmd],
            capture_output=True,
            text=True,
            env=env,
            check=False,
        )
        took = time.monotonic() - t0
        return {
            "seconds": took,
            "failed": res.stdout.count("| FAILED"),
            "unreachable": res.stdout.count("| UNREACHABLE"),
        }

    return run


def via_serial_ssh(
    fleet: fakehosts.Fleet, port: int, key: Path, known: Path
) -> Callable[[int], dict[str, Any]]:
    async def stop_all() -> tuple[int, int]:
        failed = unreachable = 0
        for h in fleet.hosts:  # one server after another, a new connection each, as OBD's stop plugin does
            try:
                async with asyncssh.connect(
                    h.ip,
                    port,
                    username="root",
                    client_keys=[str(key)],
                    known_hosts=str(known),
                    config=None,
                    agent_path=None,
                ) as conn:
                    res = await conn.run(ONE_LINER.format(home=h.home, hexip=hexip(h.ip)), check=False)
                    failed += res.exit_status != 0
            except (OSError, asyncssh.Error):
                unreachable += 1
        return failed, unreachable

    def run(i: int) -> dict[str, Any]:
        t0 = time.monotonic()
        failed, unreachable = asyncio.run(stop_all())
        return {"seconds": time.monotonic() - t0, "failed": failed, "unreachable": unreachable}

    return run


def run_fleet(
    n: int, runs: int, work: Path, broker: str, ssh: tuple[int, Path, Path], ansible: str
) -> dict[str, Any]:
    port, key, known = ssh
    d = work / f"fleet-{n}"
    zones = 3 if n % 3 == 0 else 1
    fleet = fakehosts.up(d, zones=zones, servers_per_zone=n // zones, broker=broker, first_ip=free_block(n))
    systems_out: dict[str, Any] = {}
    try:
        agentless = tomllib.loads((d / "controller.toml").read_text())
        agentless.pop("mqtt")
        agentless["agentless"] = {
            "ssh": [
                {
                    "host": h.host,
                    "address": h.ip,
                    "port": port,
                    "user": "root",
                    "identity": str(key),
                    "known_hosts": str(known),
                }
                for h in fleet.hosts
            ]
        }
        (d / "controller-ssh.toml").write_text(tomli_w.dumps(agentless))
        systems = {
            "obstop via agents": via_controller(d / "controller.toml", d, "agents"),
            "obstop agentless over SSH": via_controller(d / "controller-ssh.toml", d, "ssh"),
            "Ansible ad-hoc (forks=30)": via_ansible(ansible, fleet, port, key, known, d),
            "serial SSH loop (OBD-style)": via_serial_ssh(fleet, port, key, known),
        }
        for name, run in systems.items():
            rows = []
            for i in range(runs):
                restart_observers(fleet, d)
                row = run(i) | end_state(fleet)
                rows.append(row)
                print(json.dumps({"hosts": n, "system": name, "run": i, **row}), flush=True)
            systems_out[name] = {
                "cold_s": rows[0]["seconds"],
                "warm_s": summary([r["seconds"] for r in rows[1:]]) if len(rows) > 1 else None,
                "runs": rows,
            }
    finally:
        fakehosts.down(d)
    base = systems_out["obstop via agents"]
    for s in systems_out.values():
        s["ratio_to_obstop_agents_cold"] = s["cold_s"] / base["cold_s"]
        if s["warm_s"] and base["warm_s"]:
            s["ratio_to_obstop_agents_warm"] = s["warm_s"]["median"] / base["warm_s"]["median"]
    return systems_out


def main() -> None:
    p = argparse.ArgumentParser(description="side by side stop benchmark")
    p.add_argument("--hosts", type=int, nargs="+", default=[1, 10, 30])
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--ansible", default=shutil.which("ansible") or "/tmp/ansible-venv/bin/ansible")
    p.add_argument("--out", type=Path, default=Path("bench/results/sidebyside.json"))
    a = p.parse_args()
    results: dict[str, Any] = {"by_hosts": {}}
    with tempfile.TemporaryDirectory(prefix="obstop-bench-sbs-") as tmp:
        work = Path(tmp)
        sshd, port, key, known = start_sshd(work / "sshd")
        try:
            with mosquitto(work / "mqtt") as broker:
                for n in a.hosts:
                    results["by_hosts"][str(n)] = run_fleet(
                        n, a.runs, work, broker, (port, key, known), a.ansible
                    )
        finally:
            sshd.terminate()
            sshd.wait(10)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
