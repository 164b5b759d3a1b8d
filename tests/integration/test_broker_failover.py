"""[mqtt] urls with two plain Mosquittos (no shared sessions: the weakest "cluster"): the broker the
controller and the agents use is stopped in the middle of a stop; every client moves on to the next URL,
subscribes again, the agents announce themselves there, and the controller's re-sends (same command ids)
finish the stop: one SIGTERM per observer."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.controller import amend_config, running
from tests.support.fleet import Fleets, agent_log, observer_log, wait_for
from tests.support.mosquitto import Mosquitto
from tests.support.processes import alive


@pytest.fixture
def two_brokers(mosquitto: Callable[..., Mosquitto]) -> list[Mosquitto]:
    return [mosquitto("m1"), mosquitto("m2")]


@pytest.fixture
def fleets_on_m1(tmp_path: Path, two_brokers: list[Mosquitto]) -> Iterator[Fleets]:
    f = Fleets(tmp_path, two_brokers[0].url)
    try:
        yield f
    finally:
        f.down()


async def test_the_broker_goes_away_mid_stop_everyone_moves_to_the_next(
    two_brokers: list[Mosquitto], fleets_on_m1: Fleets
) -> None:
    m1, m2 = two_brokers
    fleet = await fleets_on_m1.up(
        zones=2, per_zone=1, misbehave={h: ["--exit-delay", "1"] for h in ("h1", "h2")}
    )
    for h in fleet.hosts:
        await asyncio.to_thread(fleets_on_m1.move_agent, fleet, h, [m1.url, m2.url])
    config = amend_config(
        Path(fleet.dir) / "controller.toml", mqtt={"urls": [m1.url, m2.url]}, stop={"resend_interval": 0.5}
    )
    async with running(config) as env:
        for h in fleet.hosts:
            await wait_for(lambda h=h: "online; serving" in agent_log(fleet, h), f"agent {h.host} not up")
        task_id = (await env.stop(body={"freeze": False})).json()["data"]["id"]
        await wait_for(lambda: "received SIGTERM" in observer_log(fleet.hosts[0]), "the stop never began")
        await asyncio.to_thread(m1.stop)

        assert await env.wait(task_id) == "SUCCESSFUL"
        for h in fleet.hosts:
            assert observer_log(h).count("received SIGTERM") == 1, observer_log(h)
            assert not alive(h.observer_pid)
            _, sep, after = agent_log(fleet, h).partition("lost or refused")
            assert sep and f"connected to MQTT broker {m2.url}" in after and "online; serving" in after
