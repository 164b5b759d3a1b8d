"""`obstop fakehosts up|down`: fake hosts on one machine, each with its own loopback address, a fake
observer on ports 2881/2882 and (unless --no-agents) an agent process; plus what a controller needs to
run against them: D/inventory.toml, D/controller.toml, D/admin.password, D/keys/ (the controller's
command-signing pair, and in D/keys/agents/ each agent's public key; each agent's private key stays in
its host's directory). Each fleet has its own MQTT topic prefix, so fleets sharing a broker never meet.

`down` stops observers through the agent's own safe procedure, stops the agents, and leaves no process.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

import aiomqtt
import psutil
import tomli_w

from obstop.agent import procedure, signing
from obstop.agent.executors.local import LocalHost
from obstop.agent.mqtt_session import parse_url
from obstop.agent.protocol import DEFAULT_TOPIC_PREFIX, ObserverTarget, Presence, presence_topic
from obstop.controller.auth import hash_password
from obstop.fakes.cluster import FakeCluster
from obstop.fakes.install import FakeObserver, start
from obstop.fakes.net import free_port

STATE = "fakehosts.json"
AGENT_KEYS = "keys/agents"  # the controller's [signing] agent_keys_dir, relative to D


@dataclass
class HostState:
    host: str
    ip: str
    zone: str
    home: str
    observer_pid: int
    agent_pid: int | None = None
    agent_config: str | None = None


@dataclass
class Fleet:
    dir: str
    broker: str | None
    api_url: str
    hosts: list[HostState] = field(default_factory=list)
    topic_prefix: str = DEFAULT_TOPIC_PREFIX

    def save(self) -> None:
        Path(self.dir, STATE).write_text(json.dumps(asdict(self), indent=2))

    @classmethod
    def load(cls, directory: Path) -> Fleet:
        raw = json.loads((directory / STATE).read_text())
        return cls(
            raw["dir"],
            raw["broker"],
            raw["api_url"],
            [HostState(**h) for h in raw["hosts"]],
            raw.get("topic_prefix", DEFAULT_TOPIC_PREFIX),
        )


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    src = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def up(
    directory: Path,
    *,
    zones: int = 3,
    servers_per_zone: int = 1,
    broker: str | None = "mqtt://127.0.0.1:1883",
    agents: bool = True,
    first_ip: str = "127.0.0.11",
    api_port: int | None = None,
    misbehave: dict[str, list[str]] | None = None,
    ready_timeout: float = 30.0,
    freeze_delay: float = 0.3,
) -> Fleet:
    """Start the fleet and write its files. Raises if anything fails to come up (after cleaning up)."""
    directory = directory.resolve()
    directory.mkdir(parents=True, exist_ok=True)
    if (directory / STATE).exists():
        raise RuntimeError(
            f"{directory} already holds fake hosts; run `obstop fakehosts down --dir {directory}`"
        )
    keys = directory / "keys"
    if not (keys / signing.PRIVATE_NAME).exists():
        signing.generate(keys)
    port = api_port or free_port()
    sys_password = secrets.token_urlsafe(12)
    FakeCluster.create(directory / "cluster", password=sys_password, freeze_delay=freeze_delay)
    pw = directory / "sys.password"
    pw.write_text(sys_password + "\n")
    pw.chmod(0o600)
    prefix = f"obstop-fleet-{secrets.token_hex(4)}"  # unique per fleet: fleets on one broker never meet
    fleet = Fleet(str(directory), broker if agents else None, f"http://127.0.0.1:{port}", topic_prefix=prefix)
    base = ipaddress.IPv4Address(first_ip)
    try:
        n = 0
        for z in range(1, zones + 1):
            for _ in range(servers_per_zone):
                n += 1
                name, ip = f"h{n}", str(base + n - 1)
                root = directory / "hosts" / name
                fake = FakeObserver(
                    root / "oceanbase",
                    ip,
                    zone=f"zone{z}",
                    cluster_dir=directory / "cluster",
                    misbehave=(misbehave or {}).get(name, []),
                )
                pid = start(fake)
                fleet.hosts.append(HostState(name, ip, fake.zone, str(fake.home), pid))
                fleet.save()
                if agents:
                    _agent_key(name, root, directory / AGENT_KEYS)
                    start_agent(
                        fleet.hosts[-1], root, keys, broker or "mqtt://127.0.0.1:1883", topic_prefix=prefix
                    )
                    fleet.save()
        if agents:
            asyncio.run(_await_presence(fleet, ready_timeout))
        _write_controller_files(fleet, directory, port, agents)
    except BaseException:
        down(directory)
        raise
    return fleet


def _agent_key(name: str, root: Path, public_dir: Path) -> None:
    """The agent's own key pair in its host's directory; its public key where the controller looks."""
    if not (root / f"{name}.key").exists():
        signing.generate(root, agent=name)
    public_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(root / f"{name}.pub", public_dir / f"{name}.pub")


def start_agent(
    h: HostState, root: Path, keys: Path, broker: str, *, topic_prefix: str = DEFAULT_TOPIC_PREFIX
) -> None:
    """Write the host's agent.toml (the first time only: a restarted agent keeps its prefix and key) and
    start its agent process, detached."""
    config = root / "agent.toml"
    if not config.exists():
        config.write_text(
            tomli_w.dumps(
                {
                    "agent_id": h.host,
                    "state_dir": "agent-state",
                    "controller_public_key": str(keys / signing.PUBLIC_NAME),
                    "private_key": f"{h.host}.key",
                    "mqtt": {"url": broker, "topic_prefix": topic_prefix},
                }
            )
        )
    log = open(root / "agent.log", "ab")  # noqa: SIM115 - handed to the child
    proc = subprocess.Popen(
        [sys.executable, "-m", "obstop", "agent", "--config", str(config)],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=log,
        env=_child_env(),
        start_new_session=True,
        cwd=root,
    )
    log.close()
    h.agent_pid, h.agent_config = proc.pid, str(config)


async def _await_presence(fleet: Fleet, timeout: float) -> None:
    """Every agent's retained presence says online (so a stop right away reaches them all)."""
    assert fleet.broker is not None
    addr = parse_url(fleet.broker)
    want = {h.host for h in fleet.hosts}
    async with aiomqtt.Client(
        addr.host, addr.port, identifier=f"obstop-fakehosts-{secrets.token_hex(4)}"
    ) as c:
        for h in want:
            await c.subscribe(presence_topic(h, fleet.topic_prefix), qos=1)
        try:
            async with asyncio.timeout(timeout):
                async for m in c.messages:
                    if m.payload in (Presence.ONLINE.value.encode(), Presence.ONLINE.value):
                        want.discard(m.topic.value.split("/")[-2])
                    if not want:
                        return
        except TimeoutError:
            dead = [h.host for h in fleet.hosts if h.agent_pid and not psutil.pid_exists(h.agent_pid)]
            raise RuntimeError(
                f"agents not online after {timeout:g}s: {sorted(want)}"
                + (f" (exited: {dead}; see hosts/*/agent.log)" if dead else "")
            ) from None


def _write_controller_files(fleet: Fleet, directory: Path, port: int, agents: bool) -> None:
    servers = [
        {
            "id": i,
            "zone": h.zone,
            "host": h.host,
            "ip": h.ip,
            "sql_port": 2881,
            "rpc_port": 2882,
            "home_path": h.home,
        }
        for i, h in enumerate(fleet.hosts, start=1)
    ]
    (directory / "inventory.toml").write_text(
        tomli_w.dumps({"clusters": [{"id": 1, "name": "obcluster", "ob_cluster_id": 1, "servers": servers}]})
    )
    password = secrets.token_urlsafe(18)
    pw_file = directory / "admin.password"
    pw_file.write_text(password + "\n")
    pw_file.chmod(0o600)
    config: dict[str, object] = {
        "inventory": "inventory.toml",
        "api": {
            "listen": f"127.0.0.1:{port}",
            "users": [
                {
                    "name": "admin",
                    "password_hash": hash_password(password),
                    "roles": ["CLUSTER_MANAGER", "TASK_MANAGER", "TASK_VIEWER"],
                }
            ],
        },
        "store": {"url": "sqlite:///state/controller.db"},
        "signing": {"private_key": f"keys/{signing.PRIVATE_NAME}"},
        "stop": {"term_timeout": 10.0, "kill_timeout": 10.0, "port_timeout": 30.0, "resend_interval": 1.0},
        "cluster_sql": [{"cluster_id": 1, "user": "root@sys", "password_file": "sys.password"}],
    }
    if agents:
        config["mqtt"] = {"url": fleet.broker, "topic_prefix": fleet.topic_prefix}
        config["signing"] = {"private_key": f"keys/{signing.PRIVATE_NAME}", "agent_keys_dir": AGENT_KEYS}
    else:
        config["agentless"] = {"local_hosts": [h.host for h in fleet.hosts]}
    (directory / "controller.toml").write_text(tomli_w.dumps(config))


def down(directory: Path, timeout: float = 10.0) -> list[str]:
    """Stop everything `up` started under directory; returns one line per action taken."""
    directory = directory.resolve()
    done: list[str] = []
    try:
        fleet = Fleet.load(directory)
    except FileNotFoundError:
        fleet = None
    if fleet is not None:
        for h in fleet.hosts:
            if h.agent_pid and _is_our_agent(h.agent_pid, h.agent_config or ""):
                _terminate(h.agent_pid, timeout)
                done.append(f"agent {h.host} (pid {h.agent_pid}) stopped")
        asyncio.run(_stop_observers(fleet, done))
    # nothing may stay behind (a fake observer's lingering child), but only the fleet's own processes go:
    # running in the fleet's directory *and* started from a path inside it (an operator's shell is neither)
    inside = str(directory) + os.sep
    for proc in psutil.process_iter():
        try:
            ours = proc.cwd().startswith(inside) and any(arg.startswith(inside) for arg in proc.cmdline())
            if ours and proc.pid != os.getpid():
                proc.kill()
                done.append(f"killed leftover pid {proc.pid} ({' '.join(proc.cmdline())[:80]})")
        except psutil.Error:
            continue
    (directory / STATE).unlink(missing_ok=True)
    return done


async def _stop_observers(fleet: Fleet, done: list[str]) -> None:
    host = LocalHost("fakehosts")

    async def one(h: HostState) -> None:
        fake = FakeObserver(Path(h.home), h.ip)
        target = ObserverTarget(host="fakehosts", ip=h.ip, home_path=str(fake.home))
        report = await procedure.stop(host, target)
        done.append(
            f"observer {h.host}: "
            + (
                "already stopped"
                if report.already_stopped
                else f"stopped pid {report.pid}"
                if report.ok
                else str(report.reason)
            )
        )

    await asyncio.gather(*(one(h) for h in fleet.hosts))


def _is_our_agent(pid: int, config: str) -> bool:
    try:
        return config in psutil.Process(pid).cmdline()
    except psutil.Error:
        return False


def _terminate(pid: int, timeout: float) -> None:
    try:
        proc = psutil.Process(pid)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout)
    except psutil.TimeoutExpired:
        proc.kill()
    except psutil.Error:
        return
