"""A clustered broker (issue 13): a 3-node NATS cluster (JetStream, MQTT listener on each node), the agents
spread over its nodes (each agent's [mqtt] urls starts at another node), the controller on node 1. One
node is SIGKILLed in the middle of a stop: the clients on it move to the next node of their list, keep
their subscriptions (persistent sessions), re-announce their presence, and the stop completes with one
SIGTERM per observer."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from obstop.fakes.net import free_port
from reliability.nats import NatsCluster, nats_server
from tests.support.controller import amend_config
from tests.support.controller_process import ControllerProcess
from tests.support.fleet import Fleets, agent_log, observer_log, wait_for
from tests.support.processes import alive

pytestmark = pytest.mark.skipif(nats_server() is None, reason="nats-server is not installed")


@pytest.fixture
def nats(tmp_path: Path) -> Iterator[NatsCluster]:
    cluster = NatsCluster(tmp_path / "nats")
    try:
        yield cluster.start()
    finally:
        cluster.stop()


@pytest.fixture
def fleets_on_nats(tmp_path: Path, nats: NatsCluster) -> Iterator[Fleets]:
    f = Fleets(tmp_path, nats.url(0))
    try:
        yield f
    finally:
        f.down()


@pytest.mark.parametrize("node", [1, 0], ids=["an-agents-node", "the-controllers-node"])
async def test_stop_completes_when_a_broker_node_dies(
    node: int,
    tmp_path: Path,
    nats: NatsCluster,
    fleets_on_nats: Fleets,
    controllers: Callable[..., ControllerProcess],
) -> None:
    fleet = await fleets_on_nats.up(
        zones=3, per_zone=1, misbehave={h: ["--exit-delay", "1"] for h in ("h1", "h2", "h3")}
    )
    for i, h in enumerate(fleet.hosts):  # h1 on node 1, h2 on node 2, h3 on node 3 first
        await asyncio.to_thread(fleets_on_nats.move_agent, fleet, h, nats.urls(i))
    config = amend_config(
        Path(fleet.dir) / "controller.toml",
        api={"listen": f"127.0.0.1:{free_port()}"},
        mqtt={"urls": nats.urls(0)},
        stop={"resend_interval": 0.5},
    )
    ctl = controllers(config)
    await asyncio.to_thread(ctl.start)
    for i, h in enumerate(fleet.hosts):
        await wait_for(
            lambda h=h, i=i: f"connected to MQTT broker {nats.url(i)}" in agent_log(fleet, h),
            f"agent {h.host} never connected to node {i + 1}",
        )

    task_id = await asyncio.to_thread(ctl.stop_cluster, 1, {"freeze": False})
    # mid-stop: the agents on that node have a command, or are about to get one; node 1 is also the
    # controller's, which moves on to node 2 with its session (events published meanwhile wait there)
    await wait_for(lambda: "received SIGTERM" in observer_log(fleet.hosts[0]), "the stop never began")
    await asyncio.to_thread(nats.kill, node)

    status = await asyncio.to_thread(ctl.finish, task_id, 90)
    assert status == "SUCCESSFUL", ctl.task(task_id)
    for h in fleet.hosts:
        assert observer_log(h).count("received SIGTERM") == 1, observer_log(h)
        assert not alive(h.observer_pid)
    moved = agent_log(fleet, fleet.hosts[node])
    assert "rejected command" not in moved
    # its node gone, the agent moved on to another of its list and announced itself there
    _, sep, after = moved.partition("lost or refused")
    assert sep and "connected to MQTT broker" in after and "online; serving" in after, moved
    assert f"connected to MQTT broker {nats.url(node)} " not in after, moved
    if node == 0:
        ctl_log = (tmp_path / "controller.log").read_text()
        _, sep, after = ctl_log.partition("lost or refused")
        assert sep and "connected to MQTT broker" in after, ctl_log[-3000:]  # on another node
        assert f"connected to MQTT broker {nats.url(0)} " not in after, ctl_log[-3000:]
    assert await asyncio.to_thread(ctl.stop) == 0
