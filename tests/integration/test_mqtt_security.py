"""Commands published on the broker by another client are never acted on, and each is rejected with its
reason; with deploy/'s Mosquitto ACLs an agent neither receives nor writes another agent's topics."""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from obstop.agent import signing
from obstop.agent.protocol import (
    CommandKind,
    EventEnvelope,
    ObserverTarget,
    RejectedEvent,
    ResultEvent,
    StopArgs,
    StopOptions,
    commands_topic,
    events_topic,
    new_command,
    utcnow,
)
from obstop.fakes import hosts as fakehosts
from obstop.fakes.install import FakeObserver, start
from tests.support.fleet import Fleets, agent_log
from tests.support.mosquitto import Mosquitto
from tests.support.processes import alive

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "mosquitto"


@pytest.fixture
async def one_host(fleets: Fleets) -> fakehosts.Fleet:
    return await fleets.up(zones=1, per_zone=1)


class Probe:
    """A client on the broker that publishes to h1's commands and reads h1's events."""

    def __init__(self, client: aiomqtt.Client, prefix: str) -> None:
        self.client = client
        self.prefix = prefix

    async def send(self, payload: str | bytes, agent: str = "h1") -> None:
        await self.client.publish(commands_topic(agent, self.prefix), payload, qos=1)

    async def next_answer(self, command_id: str | None) -> Any:
        async with asyncio.timeout(20):
            async for m in self.client.messages:
                event = EventEnvelope.parse(
                    bytes(m.payload) if not isinstance(m.payload, bytes) else m.payload
                )
                if isinstance(event, (RejectedEvent, ResultEvent)) and event.command_id == command_id:
                    return event
        raise AssertionError("no answer")


@pytest.fixture
async def probe(broker: Mosquitto, one_host: fakehosts.Fleet) -> AsyncIterator[Probe]:
    async with aiomqtt.Client("127.0.0.1", broker.port, identifier="attacker") as c:
        await c.subscribe(events_topic("h1", one_host.topic_prefix), qos=1)
        yield Probe(c, one_host.topic_prefix)


def stop_command(fleet: fakehosts.Fleet, agent_id: str = "h1", ttl: float = 60) -> Any:
    h = fleet.hosts[0]
    target = ObserverTarget(host="h1", ip=h.ip, home_path=h.home)
    return new_command(
        agent_id, CommandKind.STOP_OBSERVER, StopArgs(target=target, options=StopOptions()), ttl=ttl
    )


def real_key(fleet: fakehosts.Fleet) -> Any:
    return signing.load_private(Path(fleet.dir) / "keys" / signing.PRIVATE_NAME)


async def test_forged_unsigned_expired_misaddressed_malformed_are_rejected(
    probe: Probe, one_host: fakehosts.Fleet, tmp_path: Path
) -> None:
    fleet, pid = one_host, one_host.hosts[0].observer_pid
    signing.generate(tmp_path / "other-keys")
    other = signing.load_private(tmp_path / "other-keys" / signing.PRIVATE_NAME)
    key = real_key(fleet)
    expired = stop_command(fleet).model_copy(
        update={"issued_at": utcnow() - timedelta(hours=1), "expires_at": utcnow() - timedelta(minutes=1)}
    )
    # only a command the controller signed has its id echoed: anyone can write any id
    cases = [
        (signing.sign(stop_command(fleet), other), "bad signature", False),
        (stop_command(fleet), "unsigned command", False),
        (signing.sign(expired, key), "expired", True),
        (signing.sign(stop_command(fleet, agent_id="h2"), key), "addressed to agent h2", True),
    ]
    for cmd, reason, authenticated in cases:
        await probe.send(cmd.model_dump_json())
        answer = await probe.next_answer(cmd.command_id if authenticated else None)
        assert isinstance(answer, RejectedEvent) and reason in answer.reason, answer
    # a signed command whose content was altered after signing
    tampered = json.loads(signing.sign(stop_command(fleet), key).model_dump_json())
    tampered["args"]["options"]["signal"] = "SIGKILL"
    await probe.send(json.dumps(tampered))
    answer = await probe.next_answer(None)
    assert isinstance(answer, RejectedEvent) and "bad signature" in answer.reason
    for payload in (b"{not json", json.dumps({"command_id": "abcdefgh1", "kind": "rm -rf /"}).encode()):
        await probe.send(payload)
        answer = await probe.next_answer(None)
        assert isinstance(answer, RejectedEvent) and "malformed command" in answer.reason
    assert alive(pid)
    log = agent_log(fleet, fleet.hosts[0])
    # the two authenticated rejections each; the unauthenticated ones once per cause per minute
    assert log.count("rejected command") == 5, log


async def test_replay_is_answered_from_the_journal_and_never_executed_again(
    probe: Probe, one_host: fakehosts.Fleet
) -> None:
    fleet = one_host
    h = fleet.hosts[0]
    cmd = signing.sign(stop_command(fleet), real_key(fleet))
    await probe.send(cmd.model_dump_json())
    first = await probe.next_answer(cmd.command_id)
    assert isinstance(first, ResultEvent) and first.stop and first.stop.ok and not first.replayed
    assert not alive(h.observer_pid)

    # the observer is started again by ops; an attacker replays the captured command
    new_pid = start(FakeObserver(Path(h.home), h.ip))
    await probe.send(cmd.model_dump_json())
    again = await probe.next_answer(cmd.command_id)
    assert isinstance(again, ResultEvent) and again.replayed and again.stop == first.stop
    assert alive(new_pid)

    # a re-send with new timestamps (a restarted controller re-signs it) is the same command
    resent = signing.sign(
        cmd.model_copy(
            update={"signature": None, "issued_at": utcnow(), "expires_at": utcnow() + timedelta(minutes=5)}
        ),
        real_key(fleet),
    )
    await probe.send(resent.model_dump_json())
    again = await probe.next_answer(cmd.command_id)
    assert isinstance(again, ResultEvent) and again.replayed and again.stop == first.stop

    # the same id asking for something else is refused outright
    args = json.loads(json.dumps(cmd.args))
    args["options"]["term_timeout"] = 1.0
    altered = signing.sign(cmd.model_copy(update={"signature": None, "args": args}), real_key(fleet))
    await probe.send(altered.model_dump_json())
    refused = await probe.next_answer(cmd.command_id)
    assert isinstance(refused, RejectedEvent) and "reused for a different command" in refused.reason
    assert alive(new_pid)


# --- deploy/'s broker config: password file and per-agent ACLs ------------------------------------


@pytest.fixture
def secured(tmp_path: Path, mosquitto: Callable[..., Mosquitto]) -> Mosquitto:
    passwd = tmp_path / "passwd"
    for user in ("h1", "h2", "obstop-controller"):
        flags = ["-b", "-c"] if not passwd.exists() else ["-b"]
        subprocess.run(["mosquitto_passwd", *flags, str(passwd), user, f"{user}-pw"], check=True)
    return mosquitto(
        "secured", anonymous=False, extra=f"password_file {passwd}\nacl_file {DEPLOY / 'obstop.acl'}\n"
    )


def as_user(m: Mosquitto, user: str) -> aiomqtt.Client:
    return aiomqtt.Client(
        "127.0.0.1", m.port, identifier=f"test-{user}", username=user, password=f"{user}-pw"
    )


async def received(client: aiomqtt.Client, until: bytes) -> list[tuple[str, bytes]]:
    got: list[tuple[str, bytes]] = []
    async with asyncio.timeout(10):
        async for m in client.messages:
            payload = m.payload if isinstance(m.payload, bytes) else str(m.payload).encode()
            got.append((m.topic.value, payload))
            if payload == until:
                return got
    return got


async def test_acl_confines_each_agent_to_its_own_topics(secured: Mosquitto) -> None:
    async with as_user(secured, "h1") as h1, as_user(secured, "obstop-controller") as ctl:
        await h1.subscribe("obstop/v1/agents/h2/commands", qos=1)
        await h1.subscribe("obstop/v1/agents/h1/commands", qos=1)
        await ctl.subscribe("obstop/v1/agents/+/events", qos=1)
        await ctl.subscribe("obstop/v1/agents/+/presence", qos=1)

        # the controller sends to h2, then to h1: h1 sees only its own (order proves the first was dropped)
        await ctl.publish("obstop/v1/agents/h2/commands", b"for-h2", qos=1)
        await ctl.publish("obstop/v1/agents/h1/commands", b"for-h1", qos=1)
        assert await received(h1, b"for-h1") == [("obstop/v1/agents/h1/commands", b"for-h1")]

        # h1 writes into h2's events and presence, then its own events: only its own arrive
        await h1.publish("obstop/v1/agents/h2/events", b"forged-by-h1", qos=1)
        await h1.publish("obstop/v1/agents/h2/presence", b"offline", qos=1)
        await h1.publish("obstop/v1/agents/h1/events", b"h1-own", qos=1)
        assert await received(ctl, b"h1-own") == [("obstop/v1/agents/h1/events", b"h1-own")]


async def test_broker_refuses_unknown_clients(secured: Mosquitto) -> None:
    with pytest.raises(aiomqtt.MqttError):
        async with aiomqtt.Client("127.0.0.1", secured.port, identifier="anon"):
            pass
