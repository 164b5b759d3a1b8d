"""A command never outlives the controller's wait for it (found by the fault trials, R2: an agent killed
between receiving a stop and signalling was restarted after its subtask had FAILED, finished the
command from its journal, and SIGTERMed the observer after its stop had ended). The controller signs each
command to expire when its wait ends, and an agent restarted with an expired command cut off in its
journal records it as not run, never finishing it."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from pathlib import Path

import aiomqtt
import psutil

from obstop.agent import signing
from obstop.agent.protocol import (
    Command,
    CommandKind,
    ObserverTarget,
    StopArgs,
    StopOptions,
    commands_topic,
    new_command,
)
from tests.support.controller import amend_config, running
from tests.support.fleet import Fleets, agent_log, host_dir, observer_log, wait_for
from tests.support.mosquitto import Mosquitto
from tests.support.processes import alive, wait_dead


async def test_a_stop_command_expires_when_its_subtask_stops_waiting(
    fleets: Fleets, broker: Mosquitto
) -> None:
    fleet = await fleets.up(zones=1, per_zone=1)
    config = amend_config(Path(fleet.dir) / "controller.toml", stop={"subtask_timeout": 5})
    seen: list[Command] = []
    async with aiomqtt.Client("127.0.0.1", broker.port, identifier="onlooker") as c:
        await c.subscribe(commands_topic("h1", fleet.topic_prefix), qos=1)

        async def watch() -> None:
            async for m in c.messages:
                cmd = Command.model_validate_json(bytes(m.payload))  # type: ignore[arg-type]
                if cmd.kind is CommandKind.STOP_OBSERVER:
                    seen.append(cmd)
                    return

        async with running(config) as env, asyncio.timeout(30):
            reader = asyncio.create_task(watch())
            task_id = (await env.stop(body={"freeze": False})).json()["data"]["id"]
            assert await env.wait(task_id) == "SUCCESSFUL"
            await reader
    (cmd,) = seen
    assert (cmd.expires_at - cmd.issued_at).total_seconds() <= 5, (cmd.issued_at, cmd.expires_at)


async def test_an_expired_command_cut_off_by_a_restart_is_not_finished(fleets: Fleets) -> None:
    fleet = await fleets.up(zones=1, per_zone=1)
    h1 = fleet.hosts[0]
    assert h1.agent_pid is not None
    psutil.Process(h1.agent_pid).kill()
    wait_dead(h1.agent_pid)
    # what the journal holds when the agent died between receiving the stop and signalling
    target = ObserverTarget(host="h1", ip=h1.ip, home_path=h1.home)
    key = signing.load_private(Path(fleet.dir) / "keys" / signing.PRIVATE_NAME)
    cmd = signing.sign(
        new_command("h1", CommandKind.STOP_OBSERVER, StopArgs(target=target, options=StopOptions()), ttl=0.2),
        key,
    )
    journal = host_dir(fleet, h1) / "agent-state" / "journal.db"
    with sqlite3.connect(journal) as db:
        db.execute(
            "INSERT INTO commands (command_id, payload, received_at) VALUES (?, ?, ?)",
            (cmd.command_id, cmd.model_dump_json(), time.time()),
        )
    await asyncio.sleep(max(0.0, (cmd.expires_at - cmd.issued_at).total_seconds()))  # it expires meanwhile
    fleets.restart_agent(fleet, h1)

    await wait_for(lambda: "not run again" in agent_log(fleet, h1), "the agent never dropped the command")
    assert alive(h1.observer_pid)
    assert "received SIGTERM" not in observer_log(h1)
    assert "cut off by a restart" not in agent_log(fleet, h1)
    with sqlite3.connect(journal) as db:
        (result,) = db.execute(
            "SELECT result FROM commands WHERE command_id = ?", (cmd.command_id,)
        ).fetchone()
    assert "while this agent was down" in json.loads(result)["error"]
