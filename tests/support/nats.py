"""A real 3-node NATS cluster with JetStream and its MQTT listener, on free loopback ports (each node its
own client, cluster, monitoring and MQTT port, its own JetStream store and server_name)."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
from pathlib import Path

import aiomqtt

from obstop.fakes.net import free_port
from tests.support.processes import wait_port


def nats_server() -> str | None:
    return shutil.which("nats-server") or next(
        (p for p in ("/usr/sbin/nats-server", "/usr/local/bin/nats-server") if Path(p).exists()), None
    )


class NatsCluster:
    def __init__(self, root: Path, nodes: int = 3) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.mqtt_ports = [free_port() for _ in range(nodes)]
        self.route_ports = [free_port() for _ in range(nodes)]
        routes = ", ".join(f"nats-route://127.0.0.1:{p}" for p in self.route_ports)
        self.confs = []
        for i in range(nodes):
            conf = root / f"n{i + 1}.conf"
            conf.write_text(
                f'server_name: "n{i + 1}"\n'
                f"listen: 127.0.0.1:{free_port()}\n"
                f'jetstream {{ store_dir: "{root}/js{i + 1}" }}\n'
                f"cluster {{ name: obstop-test, listen: 127.0.0.1:{self.route_ports[i]}, routes: [{routes}] }}\n"
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

    def start(self) -> NatsCluster:
        binary = nats_server()
        assert binary is not None
        for i, conf in enumerate(self.confs):
            with open(self.root / f"n{i + 1}.log", "ab") as log:
                self.procs[i] = subprocess.Popen([binary, "-c", str(conf)], stdout=log, stderr=log)
        for port in self.mqtt_ports:
            wait_port("127.0.0.1", port)
        asyncio.run(self._ready())
        return self

    async def _ready(self, timeout: float = 60) -> None:
        """Every node takes an MQTT session: JetStream has a leader and each node made its MQTT streams
        (one node at a time: the first connections set the account's streams up)."""
        deadline = time.monotonic() + timeout
        for i in range(len(self.mqtt_ports)):
            while True:
                try:
                    async with aiomqtt.Client(
                        "127.0.0.1", self.mqtt_ports[i], identifier=f"ready-n{i + 1}", timeout=10
                    ):
                        break
                except aiomqtt.MqttError:
                    assert time.monotonic() < deadline, f"NATS node {i + 1} never took an MQTT client"
                    await asyncio.sleep(0.1)

    def kill(self, node: int) -> None:
        proc = self.procs[node]
        assert proc is not None
        proc.kill()
        proc.wait()
        self.procs[node] = None

    def stop(self) -> None:
        for i, proc in enumerate(self.procs):
            if proc is not None:
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
                self.procs[i] = None
