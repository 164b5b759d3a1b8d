"""One trial's world: its own broker, fake hosts (a fake observer and an agent each, optionally inside a
network namespace or under a skewed clock), a controller process on its own store, and the files that tie
them together (the same layout `obstop fakehosts up` writes)."""

from __future__ import annotations

import random
import secrets
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli_w

from obstop.agent import signing
from obstop.controller.auth import hash_password
from obstop.fakes.cluster import FakeCluster
from obstop.fakes.install import FakeObserver, install
from obstop.fakes.net import bindable, free_port
from reliability.control import Controller
from reliability.nats import NatsCluster
from reliability.netns import Netns
from reliability.procs import Mosquitto, OwnPostgres, TrialError, child_env, kill_under, obstop, until


@dataclass
class Host:
    name: str
    ip: str
    zone: str
    root: Path
    wrap: list[str] = field(default_factory=list)  # what the agent and observer are started under
    agent_env: dict[str, str] = field(default_factory=dict)
    broker_host: str = "127.0.0.1"  # where its agent reaches the broker (in a netns: the host side)
    observer_pid: int = 0
    agent: subprocess.Popen[bytes] | None = None

    @property
    def home(self) -> Path:
        return self.root / "oceanbase"

    @property
    def journal(self) -> Path:
        return self.root / "agent-state" / "journal.db"

    @property
    def observer_log(self) -> Path:
        return self.home / "log" / "observer.log"


@dataclass
class Spec:
    """What a scenario asks of its world."""

    hosts: int = 3
    store_url: str | None = None  # default: SQLite in the trial's directory
    misbehave: list[str] = field(default_factory=lambda: ["--exit-delay", "0.3"])
    config: dict[str, dict[str, Any]] = field(default_factory=dict)  # controller.toml sections, merged
    sql: dict[str, Any] = field(default_factory=dict)  # merged into the cluster's [[cluster_sql]]
    broker_bind: str = "127.0.0.1"
    nats: bool = False  # a 3-node NATS cluster instead of one Mosquitto; clients list every node


BASE_CONFIG: dict[str, dict[str, Any]] = {
    "stop": {
        "term_timeout": 5.0,
        "kill_timeout": 5.0,
        "port_timeout": 10.0,
        "resend_interval": 0.5,
        "subtask_timeout": 20.0,
    },
    "engine": {"lease_seconds": 3.0, "step_timeout": 20.0},
    "watch": {"probe_interval": 0.5, "report_interval": 2.0},
}


def free_ips(count: int) -> list[str]:
    """Loopback addresses with 2881/2882 free, in a block drawn at random from 127.220-249.x.x (clear of
    the tests' and `fakehosts`' blocks), so trials run side by side (CI runs several) rarely meet."""
    for _ in range(1000):
        net = f"127.{random.randrange(220, 250)}.{random.randrange(0, 250)}"
        ips = [f"{net}.{11 + i}" for i in range(count)]
        if all(bindable(ip, p) for ip in ips for p in (2881, 2882)):
            return ips
    raise TrialError("no free block of loopback addresses")


class World:
    def __init__(self, root: Path, spec: Spec) -> None:
        self.root, self.spec = root, spec
        self.prefix = f"rel-{secrets.token_hex(4)}"
        self.broker = Mosquitto(root / "broker", bind=spec.broker_bind)
        self.hosts: list[Host] = []
        self.controller: Controller | None = None
        self.isolation: dict[str, Netns] = {}  # R4: each host's namespace
        self.postgres: OwnPostgres | None = None  # R5: the instance it restarts
        self.nats: NatsCluster | None = None  # R3's NATS variant: the cluster it kills a node of

    @property
    def ctl(self) -> Controller:
        assert self.controller is not None
        return self.controller

    def plan_hosts(self, ips: list[str] | None = None) -> list[Host]:
        """Name the hosts (on free loopback addresses unless given): scenarios may wrap them before up()."""
        if ips is None:
            ips = free_ips(self.spec.hosts)
        self.hosts = [
            Host(f"h{i + 1}", ip, f"zone{i + 1}", self.root / "hosts" / f"h{i + 1}")
            for i, ip in enumerate(ips)
        ]
        return self.hosts

    def up(self) -> World:
        if not self.hosts:
            self.plan_hosts()
        if self.spec.nats:
            self.nats = NatsCluster(self.root / "nats").start()
        else:
            self.broker.start()
        keys = self.root / "keys"
        signing.generate(keys)
        sys_password = secrets.token_urlsafe(12)
        FakeCluster.create(self.root / "cluster", password=sys_password, freeze_delay=0.3)
        (self.root / "sys.password").write_text(sys_password + "\n")
        for h in self.hosts:
            self.start_observer(h)
            signing.generate(h.root, agent=h.name)
            (keys / "agents").mkdir(parents=True, exist_ok=True)
            shutil.copyfile(h.root / f"{h.name}.pub", keys / "agents" / f"{h.name}.pub")
            self._agent_config(h)
            self.start_agent(h)
        self.controller = Controller(self._controller_config(), self.root / "controller.log")
        self.ctl.start()
        until(lambda: self.ctl.agents_up() >= {h.name for h in self.hosts}, "agents never came online", 30)
        return self

    def start_observer(self, h: Host) -> None:
        fake = FakeObserver(
            h.home, h.ip, zone=h.zone, cluster_dir=self.root / "cluster", misbehave=self.spec.misbehave
        )
        install(fake.home)
        res = subprocess.run(
            h.wrap + fake.argv(), cwd=h.home, env=child_env(), capture_output=True, timeout=30, check=False
        )
        pid = fake.pid()
        if res.returncode != 0 or pid is None:
            raise TrialError(f"fake observer {h.name} did not start: {res.stderr.decode()[-300:]}")
        h.observer_pid = pid

    def _agent_config(self, h: Host) -> None:
        (h.root / "agent.toml").write_text(
            tomli_w.dumps(
                {
                    "agent_id": h.name,
                    "state_dir": "agent-state",
                    "controller_public_key": str(self.root / "keys" / signing.PUBLIC_NAME),
                    "private_key": f"{h.name}.key",
                    "mqtt": {**self._broker(h.broker_host, int(h.name[1:])), "topic_prefix": self.prefix},
                }
            )
        )

    def _broker(self, host: str, first: int) -> dict[str, Any]:
        """[mqtt] of a client: the trial's Mosquitto, or every NATS node starting at another one."""
        if self.nats is not None:
            return {"urls": self.nats.urls(first)}
        return {"url": self.broker.url(host)}

    def start_agent(self, h: Host, wrap: list[str] | None = None, env: dict[str, str] | None = None) -> None:
        """Start (or restart) the host's agent; wrap and env default to the host's own."""
        with open(h.root / "agent.log", "ab") as log:
            h.agent = subprocess.Popen(
                (h.wrap if wrap is None else wrap) + obstop("agent", "--config", str(h.root / "agent.toml")),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                env=child_env(h.agent_env if env is None else env),
                start_new_session=True,
                cwd=h.root,
            )

    def _controller_config(self) -> Path:
        servers = [
            {
                "id": i,
                "zone": h.zone,
                "host": h.name,
                "ip": h.ip,
                "sql_port": 2881,
                "rpc_port": 2882,
                "home_path": str(h.home),
            }
            for i, h in enumerate(self.hosts, start=1)
        ]
        (self.root / "inventory.toml").write_text(
            tomli_w.dumps(
                {"clusters": [{"id": 1, "name": "obcluster", "ob_cluster_id": 1, "servers": servers}]}
            )
        )
        password = secrets.token_urlsafe(18)
        (self.root / "admin.password").write_text(password + "\n")
        roles = ["CLUSTER_MANAGER", "TASK_MANAGER", "TASK_VIEWER"]
        config: dict[str, Any] = {
            "inventory": "inventory.toml",
            "api": {
                "listen": f"127.0.0.1:{free_port()}",
                "users": [{"name": "admin", "password_hash": hash_password(password), "roles": roles}],
            },
            "store": {"url": self.spec.store_url or "sqlite:///state/controller.db"},
            "signing": {"private_key": f"keys/{signing.PRIVATE_NAME}", "agent_keys_dir": "keys/agents"},
            "mqtt": {**self._broker("127.0.0.1", 0), "topic_prefix": self.prefix},
            "cluster_sql": [
                {"cluster_id": 1, "user": "root@sys", "password_file": "sys.password", **self.spec.sql}
            ],
        }
        for section in {*BASE_CONFIG, *self.spec.config}:
            config[section] = {**BASE_CONFIG.get(section, {}), **self.spec.config.get(section, {})}
        path = self.root / "controller.toml"
        path.write_text(tomli_w.dumps(config))
        return path

    def down(self) -> None:
        """Leave nothing behind: the controller, agents, observers (and their children), the broker."""
        if self.controller is not None:
            self.controller.close()
        for h in self.hosts:
            if h.agent is not None and h.agent.poll() is None:
                h.agent.kill()
                h.agent.wait(10)
        kill_under(self.root)
        self.broker.kill()
        if self.nats is not None:
            self.nats.stop()
