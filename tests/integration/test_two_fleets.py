"""Two deployments on one broker, with the same agent ids (h1, h2), each stop their own cluster at the same
time: each fleet has its own topic prefix and client ids, so neither agent set takes the other's
session (the reconnect storm) or its commands ("bad signature")."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from obstop.fakes import hosts as fakehosts
from tests.support.controller import Env, amend_config, running
from tests.support.fakes import fresh_block
from tests.support.mosquitto import Mosquitto
from tests.support.processes import alive

pytestmark = pytest.mark.mqtt


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    m = Mosquitto(tmp_path / "mosquitto").start()
    yield m
    m.stop()


@pytest.fixture
def dirs(tmp_path: Path) -> Iterator[list[Path]]:
    found = [tmp_path / "fleet-a", tmp_path / "fleet-b"]
    yield found
    for d in found:
        fakehosts.down(d)


def config_of(fleet: fakehosts.Fleet) -> Path:
    # a command the other fleet took would be re-sent after this; a stop's own answer, on a loaded
    # machine, may take longer than half a second (a re-send then is the protocol working, not cross-talk)
    return amend_config(Path(fleet.dir) / "controller.toml", stop={"resend_interval": 2.0})


async def stop(env: Env) -> str:
    r = await env.stop(body={"freeze": False})
    assert r.status_code == 200, r.text
    task_id = r.json()["data"]["id"]
    status = await env.wait(task_id)
    log = await env.log_of(task_id, "Stop observer process")
    assert "re-sent" not in log and "rejected" not in log, log
    return str(status)


async def test_two_fleets_on_one_broker_each_stop_their_own(
    tmp_path: Path, broker: Mosquitto, dirs: list[Path]
) -> None:
    fleets = []
    for d in dirs:
        fleets.append(
            await asyncio.to_thread(
                fakehosts.up, d, zones=2, servers_per_zone=1, broker=broker.url, first_ip=fresh_block(2)
            )
        )
    a, b = fleets
    assert a.topic_prefix != b.topic_prefix
    assert [h.host for h in a.hosts] == [h.host for h in b.hosts] == ["h1", "h2"]

    # two controllers (opened one after the other: Alembic migrates one store at a time in a process)
    async with running(config_of(a)) as env_a, running(config_of(b)) as env_b:
        assert await asyncio.gather(stop(env_a), stop(env_b)) == ["SUCCESSFUL", "SUCCESSFUL"]

    assert not any(alive(h.observer_pid) for f in fleets for h in f.hosts)
    for f in fleets:
        for h in f.hosts:
            log = (Path(f.dir) / "hosts" / h.host / "agent.log").read_text()
            assert log.count("connected to MQTT broker") == 1, log  # never thrown off by its twin
            assert "rejected" not in log


async def test_a_fleet_ignores_another_fleets_stop(
    tmp_path: Path, broker: Mosquitto, dirs: list[Path]
) -> None:
    a = await asyncio.to_thread(
        fakehosts.up, dirs[0], zones=1, servers_per_zone=1, broker=broker.url, first_ip=fresh_block(1)
    )
    b = await asyncio.to_thread(
        fakehosts.up, dirs[1], zones=1, servers_per_zone=1, broker=broker.url, first_ip=fresh_block(1)
    )
    async with running(config_of(a)) as env:
        assert await stop(env) == "SUCCESSFUL"
    assert not alive(a.hosts[0].observer_pid) and alive(b.hosts[0].observer_pid)
