"""An agent the controller trusts for its own host can still be hostile: its progress lines reach the
subtask log capped in size and rate per command and stripped of control characters, and progress events
over the payload cap (20 x 1 MB) are dropped unread. The test plays agent h1 with h1's own key."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from obstop.agent import signing
from obstop.agent.protocol import (
    AcceptedEvent,
    Command,
    CommandKind,
    ObserverState,
    ProbeReport,
    ProgressEvent,
    ResultEvent,
    StopReport,
    commands_topic,
    events_topic,
)
from tests.support.controller import Env, running, write_config
from tests.support.fakes import Fakes, start_cluster
from tests.support.mosquitto import Mosquitto

pytestmark = pytest.mark.mqtt
NASTY = "\x1b[2J\x1b[31mred\rback\nnewline\x00nul\u202eevil" + "x" * 1000


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    m = Mosquitto(tmp_path / "mosquitto").start()
    yield m
    m.stop()


async def play_h1(broker: Mosquitto, key: Any, ready: asyncio.Event) -> None:
    """Agent h1, hostile: answers each command, flooding progress before the result."""
    async with aiomqtt.Client("127.0.0.1", broker.port, identifier="hostile-h1") as c:
        await c.subscribe(commands_topic("h1"), qos=1)
        ready.set()
        async for m in c.messages:
            cmd = Command.model_validate_json(m.payload if isinstance(m.payload, bytes) else b"")
            if cmd.kind not in (CommandKind.PROBE_OBSERVER, CommandKind.STOP_OBSERVER):
                continue  # a watch of its observers: a hostile agent need not answer it

            async def send(event: Any, raw: bytes | None = None, cmd: Command = cmd) -> None:
                event = event.model_copy(update={"command_digest": cmd.digest()})
                await c.publish(events_topic("h1"), raw or signing.sign(event, key).model_dump_json(), qos=1)

            base = {"agent_id": "h1", "command_id": cmd.command_id}
            target = cmd.args["target"]
            probe = ProbeReport(host="h1", home_path=target["home_path"], state=ObserverState.RUNNING, pid=7)
            await send(AcceptedEvent(**base))
            if cmd.kind is CommandKind.PROBE_OBSERVER:
                await send(ResultEvent(**base, probe=probe))
                continue
            for i in range(1000):
                await send(ProgressEvent(**base, message=f"{i} {NASTY}"))
            big = ProgressEvent(**base, message="M" * (1024 * 1024), command_digest=cmd.digest())
            for _ in range(20):
                await send(big, raw=signing.sign(big, key).model_dump_json().encode())
            report = StopReport(host="h1", home_path=target["home_path"], ok=True, pid=7, probe=probe)
            await send(ResultEvent(**base, stop=report))


@pytest.fixture
async def env(tmp_path: Path, fakes: Fakes, broker: Mosquitto) -> AsyncIterator[Env]:
    keys = tmp_path / "keys"
    signing.generate(keys)
    signing.generate(keys / "h1-own", agent="h1")
    (keys / "agents").mkdir()
    (keys / "agents" / "h1.pub").write_bytes((keys / "h1-own" / "h1.pub").read_bytes())
    cluster = start_cluster(fakes, zones=1, per_zone=1)
    config = write_config(
        tmp_path,
        cluster,
        f"sqlite:///{tmp_path}/c.db",
        agentless={"local_hosts": []},
        mqtt={"url": broker.url},
        signing={"private_key": "keys/command-signing.key", "agent_keys_dir": "keys/agents"},
        stop={"subtask_timeout": 20, "resend_interval": 5},
    )
    ready = asyncio.Event()
    agent = asyncio.create_task(play_h1(broker, signing.load_private(keys / "h1-own" / "h1.key"), ready))
    await ready.wait()
    try:
        async with running(config) as e:
            yield e
    finally:
        agent.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await agent


async def test_progress_is_capped_and_cleaned(env: Env) -> None:
    task_id = (await env.stop(body={"freeze": False})).json()["data"]["id"]
    assert await env.wait(task_id) == "SUCCESSFUL"  # h1 may lie about its own host: it is trusted for it
    log = await env.log_of(task_id, "Stop observer process")
    progress = [line for line in log.splitlines() if "[h1]" in line]
    assert 1 <= len(progress) <= 101, len(progress)
    assert len(log) < 50_000, len(log)  # 1,000 lines of 1 KB and 20 MB were sent
    assert "MMMM" not in log  # the 1 MB events never got past the payload cap
    for line in progress:
        assert len(line) < 400, line
        assert not any(c in line for c in "\x1b\r\x00\u202e"), repr(line)
    # an agent's newline cannot start a line of its own: every line is the controller's, with its stamp
    assert all(line[:4].isdigit() or line.startswith("===") for line in log.splitlines()), log[:2000]
