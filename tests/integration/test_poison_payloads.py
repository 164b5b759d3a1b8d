"""No payload can end a daemon or fail a step: 1,000 nested brackets, 5,000 nested objects, payloads over
the 64 KB cap, bytes that are not UTF-8, and `{"command_id": <a live id>}`, on every topic of every
agent, retained (so every restart reads them again) and live during a stop. Both daemons keep serving
and the stop succeeds."""

from __future__ import annotations

import asyncio
import re
import signal
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiomqtt
import psutil
import pytest

from obstop.agent.protocol import Presence, agents_root, presence_topic
from obstop.fakes import hosts as fakehosts
from obstop.fakes.net import free_block
from tests.support.controller import Env, amend_config, running
from tests.support.mosquitto import Mosquitto
from tests.support.processes import alive, wait_dead

pytestmark = pytest.mark.mqtt

POISON = [
    b"[" * 1000,
    b'{"a":' * 5000 + b"1" + b"}" * 5000,
    b'{"kind": "result", "agent_id": "h1", "command_id": "x", "stop": ' + b"[" * 3000,
    b"x" * (70 * 1024),  # over the cap: dropped before anyone parses it
    b'{"command_id": "' + b"a" * (70 * 1024) + b'"}',
    b"\xff\xfe\xfd\x00\x80",
    b"null",
    b'{"kind": "result", "agent_id": "h1", "command_id": null, "error": 1e999999}',
]


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    m = Mosquitto(tmp_path / "mosquitto").start()
    yield m
    m.stop()


@pytest.fixture
async def fleet(tmp_path: Path, broker: Mosquitto) -> AsyncIterator[fakehosts.Fleet]:
    d = tmp_path / "fleet"
    f = await asyncio.to_thread(
        fakehosts.up,
        d,
        zones=2,
        servers_per_zone=1,
        broker=broker.url,
        first_ip=free_block(2),
        misbehave={h: ["--exit-delay", "1.5"] for h in ("h1", "h2")},
    )
    yield f
    await asyncio.to_thread(fakehosts.down, d)


def topics(fleet: fakehosts.Fleet) -> list[str]:
    root = agents_root(fleet.topic_prefix)
    return [f"{root}/{h.host}/{kind}" for h in fleet.hosts for kind in ("commands", "events", "presence")] + [
        f"{root}/h1/other",
        f"{root}/../events",
        f"{root}/h1",
    ]


async def restart_agent(fleet: fakehosts.Fleet, broker: Mosquitto, h: fakehosts.HostState) -> None:
    """Restart an agent and wait until it says online again (it has then read its retained messages)."""
    assert h.agent_pid is not None
    psutil.Process(h.agent_pid).send_signal(signal.SIGTERM)
    await asyncio.to_thread(wait_dead, h.agent_pid)
    async with aiomqtt.Client("127.0.0.1", broker.port, identifier="watch-presence") as c:
        await c.subscribe(presence_topic(h.host, fleet.topic_prefix), qos=1)
        root = Path(fleet.dir) / "hosts" / h.host
        fakehosts.start_agent(h, root, Path(fleet.dir) / "keys", broker.url)
        fleet.save()
        async with asyncio.timeout(20):
            async for m in c.messages:
                if m.payload == Presence.ONLINE.value.encode():
                    return


async def test_poison_on_every_topic_ends_neither_daemon(
    tmp_path: Path, broker: Mosquitto, fleet: fakehosts.Fleet
) -> None:
    async with aiomqtt.Client("127.0.0.1", broker.port, identifier="poisoner") as c:
        for topic in topics(fleet):
            for payload in POISON:
                await c.publish(topic, payload, qos=1, retain=True)  # the last one stays retained
        for h in fleet.hosts:  # every restart reads the poison again
            await restart_agent(fleet, broker, h)
        agents = {h.host: h.agent_pid for h in fleet.hosts}

        config = amend_config(Path(fleet.dir) / "controller.toml", stop={"resend_interval": 0.5})
        async with running(config) as env:
            task_id = (await env.stop(body={"freeze": False})).json()["data"]["id"]
            live = await live_command_ids(env, task_id)
            for topic in topics(fleet):
                for payload in POISON:
                    await c.publish(topic, payload, qos=1)
            for h in fleet.hosts:
                for command_id in live:  # the 50-byte publish that used to fail any step
                    await c.publish(
                        f"{agents_root(fleet.topic_prefix)}/{h.host}/commands",
                        f'{{"command_id": "{command_id}"}}'.encode(),
                        qos=1,
                    )

            assert await env.wait(task_id) == "SUCCESSFUL"
            # the controller still serves (and leaving `running` re-raises anything its loops raised)
            assert (await env.get("/api/v2/ob/clusters/1"))["status"] == "STOPPED"
        for topic in topics(fleet):
            await c.publish(topic, b"", qos=1, retain=True)  # clear the retained poison
    for host, pid in agents.items():
        assert pid is not None and alive(pid), host
        log = (Path(fleet.dir) / "hosts" / host / "agent.log").read_text()
        assert "Traceback" not in log and "rejected command ?" in log, log[-2000:]


async def live_command_ids(env: Env, task_id: int) -> set[str]:
    """Command ids of the running task, as its logs show them (what a TASK_VIEWER can read)."""
    async with asyncio.timeout(20):
        while True:
            logs = await env.log_of(task_id, "Stop observer process")
            found = set(re.findall(r"command (obstop-[A-Za-z0-9_.:-]+)", logs))
            if found:
                return found
            await asyncio.sleep(0.02)  # polling the API, as an operator would
