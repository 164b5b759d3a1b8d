"""A 3-node NATS cluster (JetStream, an MQTT listener per node) of the trial's own, on free loopback
ports: R3's variant where one node of a clustered broker is killed and started again, and the tests'
cluster (tests/e2e/test_nats_cluster.py). Clients take the nodes' URLs as `[mqtt] urls`, each list
starting at another node."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
from pathlib import Path

import aiomqtt

from obstop.fakes.net import free_port
from reliability.procs import TrialError, port_open, until


def nats_server() -> str | None:
    return shutil.which("nats-server") or next(
        (p for p in ("/usr/sbin/nats-server", "/usr/local/bin/nats-server") if Path(p).exists()), None
    )


def unavailable() -> str | None:
    return None if nats_server() else "nats-server is not installed"


class NatsCluster:
    def __init__(self, root: Path, nodes: int = 3) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.root = root
        self.mqtt_ports = [free_port() for _ in range(nodes)]
        routes = [free_port() for _ in range(nodes)]
        listed = ", ".join(f"nats-route://127.0.0.1:{p}" for p in routes)
        self.confs = []
        for i in range(nodes):
            conf = root / f"n{i + 1}.conf"
            conf.write_text(
                f'server_name: "n{i + 1}"\nlisten: 127.0.0.1:{free_port()}\n'
                f'jetstream {{ store_dir: "{root}/js{i + 1}" }}\n'
                f"cluster {{ name: obstop-trial, listen: 127.0.0.1:{routes[i]}, routes: [{listed}] }}\n"
                f"mqtt {{ listen: 127.0.0.1:{self.mqtt_ports[i]} }}\n"
            )
            self.confs.append(conf)
        self.procs: list[subprocess.Popen[bytes] | None] = [None] * nodes

    def url(self, node: int) -> str:
        return f"mqtt://127.0.0.1:{self.mqtt_ports[node]}"

    def urls(self, first: int = 0) -> list[str]:
        """Every node's MQTT URL, starting at node `first` (clients spread over the nodes)."""
        n = len(self.mqtt_ports)
        return [self.url((first + k) % n) for k in range(n)]

    def start_node(self, i: int) -> None:
        binary = nats_server()
        if binary is None:
            raise TrialError("nats-server is not installed")
        with open(self.root / f"n{i + 1}.log", "ab") as log:
            self.procs[i] = subprocess.Popen([binary, "-c", str(self.confs[i])], stdout=log, stderr=log)
        until(lambda: port_open("127.0.0.1", self.mqtt_ports[i]), f"NATS node {i + 1} did not listen", 30)

    def start(self) -> NatsCluster:
        for i in range(len(self.confs)):
            self.start_node(i)
        asyncio.run(self._ready())
        return self

    async def _ready(self, timeout: float = 60) -> None:
        """Every node takes an MQTT session (JetStream has a leader, the MQTT streams exist)."""
        deadline = time.monotonic() + timeout
        for i, port in enumerate(self.mqtt_ports):
            while True:
                try:
                    async with aiomqtt.Client("127.0.0.1", port, identifier=f"ready-n{i + 1}", timeout=10):
                        break
                except aiomqtt.MqttError:
                    if time.monotonic() > deadline:
                        raise TrialError(f"NATS node {i + 1} never took an MQTT client") from None
                    await asyncio.sleep(0.1)

    def kill(self, i: int) -> None:
        proc = self.procs[i]
        if proc is not None:
            proc.kill()
            proc.wait(10)
            self.procs[i] = None

    def stop(self) -> None:
        for i, proc in enumerate(self.procs):
            if proc is not None:
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(10)
                self.procs[i] = None
