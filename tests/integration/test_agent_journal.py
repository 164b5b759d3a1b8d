"""What the agent's journal promises, with a real agent process and broker: a probe (journalled once, with
its result) is answered again from the journal, and its id is never taken by another command; a stop cut
off right after its signal mark was made durable, before the signal left, is finished after a restart
without that signal ever being sent (the next one, SIGKILL, only after the whole wait)."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiomqtt
import psutil
import pytest

from obstop.agent import signing
from obstop.agent.protocol import (
    CommandKind,
    EventEnvelope,
    ObserverState,
    ObserverTarget,
    ProbeArgs,
    RejectedEvent,
    ResultEvent,
    StopArgs,
    StopOptions,
    commands_topic,
    events_topic,
    new_command,
)
from obstop.fakes import hosts as fakehosts
from tests.support.fleet import Fleets, agent_log, host_dir, observer_log, wait_for
from tests.support.mosquitto import Mosquitto
from tests.support.processes import alive, wait_dead


class Controller:
    """Plays the controller on the broker: signs commands for h1 and reads h1's answers."""

    def __init__(self, client: aiomqtt.Client, fleet: fakehosts.Fleet) -> None:
        self.client, self.fleet = client, fleet
        self.key = signing.load_private(Path(fleet.dir) / "keys" / signing.PRIVATE_NAME)
        h = fleet.hosts[0]
        self.target = ObserverTarget(host="h1", ip=h.ip, home_path=h.home)

    def sign(self, kind: CommandKind, args: Any, command_id: str) -> Any:
        return signing.sign(new_command("h1", kind, args, command_id=command_id, ttl=60), self.key)

    async def ask(self, cmd: Any) -> Any:
        await self.client.publish(commands_topic("h1", self.fleet.topic_prefix), cmd.model_dump_json(), qos=1)
        async with asyncio.timeout(20):
            async for m in self.client.messages:
                event = EventEnvelope.parse(bytes(m.payload))  # type: ignore[arg-type]
                if isinstance(event, (RejectedEvent, ResultEvent)) and event.command_id == cmd.command_id:
                    return event
        raise AssertionError("no answer")


@pytest.fixture
async def one_host(fleets: Fleets) -> fakehosts.Fleet:
    return await fleets.up(zones=1, per_zone=1)


@pytest.fixture
async def controller(broker: Mosquitto, one_host: fakehosts.Fleet) -> AsyncIterator[Controller]:
    async with aiomqtt.Client("127.0.0.1", broker.port, identifier="test-controller") as c:
        await c.subscribe(events_topic("h1", one_host.topic_prefix), qos=1)
        yield Controller(c, one_host)


def journal_rows(fleet: fakehosts.Fleet, command_id: str) -> list[tuple[str | None, float | None]]:
    with sqlite3.connect(host_dir(fleet, fleet.hosts[0]) / "agent-state" / "journal.db") as db:
        return list(
            db.execute("SELECT result, finished_at FROM commands WHERE command_id = ?", (command_id,))
        )


async def test_a_probe_is_journalled_with_its_result_and_a_repeat_is_answered_from_it(
    controller: Controller, one_host: fakehosts.Fleet
) -> None:
    probe = controller.sign(CommandKind.PROBE_OBSERVER, ProbeArgs(target=controller.target), "probe-once-1")
    first = await controller.ask(probe)
    assert isinstance(first, ResultEvent) and first.probe and not first.replayed
    assert first.probe.state is ObserverState.RUNNING
    ((result, finished_at),) = journal_rows(one_host, probe.command_id)
    assert result is not None and finished_at is not None
    assert json.loads(result)["probe"]["pid"] == first.probe.pid

    again = await controller.ask(probe)
    assert isinstance(again, ResultEvent) and again.replayed and again.probe == first.probe

    # the probe's id, asking for a stop, is refused: nothing is signalled
    stop = controller.sign(CommandKind.STOP_OBSERVER, StopArgs(target=controller.target), "probe-once-1")
    refused = await controller.ask(stop)
    assert isinstance(refused, RejectedEvent) and "reused for a different command" in refused.reason
    assert alive(one_host.hosts[0].observer_pid)


async def test_a_stop_cut_off_between_its_durable_mark_and_its_signal_never_sends_that_signal(
    fleets: Fleets, one_host: fakehosts.Fleet
) -> None:
    fleet, h = one_host, one_host.hosts[0]
    assert h.agent_pid is not None and h.observer_pid is not None
    psutil.Process(h.agent_pid).kill()
    wait_dead(h.agent_pid)
    # what the journal holds when the agent died after committing its SIGTERM mark, before the signal
    key = signing.load_private(Path(fleet.dir) / "keys" / signing.PRIVATE_NAME)
    target = ObserverTarget(host="h1", ip=h.ip, home_path=h.home)
    options = StopOptions(term_timeout=0.5, kill_timeout=5)
    cmd = signing.sign(
        new_command("h1", CommandKind.STOP_OBSERVER, StopArgs(target=target, options=options), ttl=60), key
    )
    started = psutil.Process(h.observer_pid).create_time()
    with sqlite3.connect(host_dir(fleet, h) / "agent-state" / "journal.db") as db:
        now = time.time()
        db.execute(
            "INSERT INTO commands (command_id, payload, received_at) VALUES (?, ?, ?)",
            (cmd.command_id, cmd.model_dump_json(), now),
        )
        db.execute(
            "INSERT INTO marks (command_id, mark, at) VALUES (?, ?, ?)",
            (cmd.command_id, f"SIGTERM:{h.observer_pid}:{started}", now),
        )
    fleets.restart_agent(fleet, h)

    await wait_for(lambda: journal_rows(fleet, cmd.command_id)[0][0] is not None, "never finished")
    ((result, _),) = journal_rows(fleet, cmd.command_id)
    stop = json.loads(result)["stop"]
    assert stop["ok"] and stop["signals"] == ["SIGTERM", "SIGKILL"], stop
    assert not alive(h.observer_pid)
    assert "received SIGTERM" not in observer_log(h)  # the marked signal was never sent
    assert "cut off by a restart" in agent_log(fleet, h)
