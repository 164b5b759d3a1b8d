"""The controller (in this process) and agents (processes) over a real Mosquitto: 3 zones x 2 servers on 6
fake hosts stopped through the HTTP API; and the faults: an agent killed mid-stop, the broker restarted
mid-stop, an agent that is down."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import psutil
import pytest

from obstop.agent.protocol import ObserverTarget, StopOptions
from obstop.controller.dispatch.mqtt import MqttDispatcher
from obstop.controller.errors import StepFailed
from obstop.fakes import hosts as fakehosts
from tests.support.controller import ADMIN, Env, amend_config, running
from tests.support.fleet import Fleets, agent_log, observer_log, wait_for
from tests.support.mosquitto import Mosquitto
from tests.support.processes import alive, wait_dead


def controller_toml(fleet: fakehosts.Fleet) -> Path:
    return Path(fleet.dir) / "controller.toml"


async def assert_all_stopped(env: Env, task_id: int, fleet: fakehosts.Fleet) -> None:
    task = await env.get(f"/api/v2/tasks/instances/{task_id}")
    assert task["status"] == "SUCCESSFUL", [(s["name"], s["status"]) for s in task["tasks"]]
    assert not any(alive(h.observer_pid) for h in fleet.hosts)
    c = await env.get("/api/v2/ob/clusters/1")
    assert c["status"] == "STOPPED"
    assert {s["status"] for z in c["zones"] for s in z["servers"]} == {"PROCESS_STOPPED"}
    for h in fleet.hosts:
        assert observer_log(h).count("received SIGTERM") == 1, (h.host, observer_log(h))


async def test_three_zones_of_two_servers_through_six_agents(fleets: Fleets) -> None:
    fleet = await fleets.up()
    assert len({h.agent_pid for h in fleet.hosts}) == 6
    async with running(amend_config(controller_toml(fleet))) as env:
        r = await env.stop()
        assert r.status_code == 200
        task_id = r.json()["data"]["id"]
        assert await env.wait(task_id) == "SUCCESSFUL"
        await assert_all_stopped(env, task_id, fleet)
        log = await env.log_of(task_id, "Stop observer process")
        assert log.count("accepted command") == 6 and log.count("stopped with SIGTERM") == 6


async def test_agent_killed_during_its_stop_and_restarted(fleets: Fleets) -> None:
    fleet = await fleets.up(zones=2, per_zone=1, misbehave={"h1": ["--exit-delay", "3"]})
    h1 = fleet.hosts[0]
    async with running(amend_config(controller_toml(fleet), stop={"resend_interval": 0.5})) as env:
        task_id = (await env.stop()).json()["data"]["id"]
        await wait_for(lambda: "received SIGTERM" in observer_log(h1), "h1's observer never got SIGTERM")
        assert h1.agent_pid is not None
        psutil.Process(h1.agent_pid).send_signal(signal.SIGKILL)
        wait_dead(h1.agent_pid)
        fleets.restart_agent(fleet, h1)

        assert await env.wait(task_id) == "SUCCESSFUL"
        await assert_all_stopped(env, task_id, fleet)
        assert "cut off by a restart" in agent_log(fleet, h1)


async def test_broker_restarted_during_stop(fleets: Fleets, broker: Mosquitto) -> None:
    fleet = await fleets.up(zones=2, per_zone=1, misbehave={h: ["--exit-delay", "1.5"] for h in ("h1", "h2")})
    async with running(amend_config(controller_toml(fleet), stop={"resend_interval": 0.5})) as env:
        task_id = (await env.stop()).json()["data"]["id"]
        await wait_for(lambda: all("received SIGTERM" in observer_log(h) for h in fleet.hosts), "no SIGTERM")
        broker.restart()

        assert await env.wait(task_id) == "SUCCESSFUL"
        await assert_all_stopped(env, task_id, fleet)


async def test_agent_down_fails_in_its_timeout_then_retry_succeeds(fleets: Fleets) -> None:
    fleet = await fleets.up(zones=2, per_zone=1)
    h2 = fleet.hosts[1]
    assert h2.agent_pid is not None
    psutil.Process(h2.agent_pid).terminate()  # a clean stop: it says offline
    wait_dead(h2.agent_pid)
    config = amend_config(controller_toml(fleet), stop={"subtask_timeout": 4, "resend_interval": 0.5})
    async with running(config) as env:
        task_id = (await env.stop()).json()["data"]["id"]
        assert await env.wait(task_id) == "FAILED"
        log = await env.log_of(task_id, "Prepare stop observer")
        assert "agent h2 offline since" in log
        assert alive(h2.observer_pid)

        fleets.restart_agent(fleet, h2)
        r = await env.client.post(f"/api/v2/tasks/instances/{task_id}/retry", headers=ADMIN)
        assert r.status_code == 200
        assert await env.wait(task_id) == "SUCCESSFUL"
        await assert_all_stopped(env, task_id, fleet)


async def test_a_command_its_step_gave_up_on_is_never_acted_on_late(fleets: Fleets) -> None:
    """A stop sent to an agent that is offline (its persistent session keeps the copies at the broker)
    fails when its step stops waiting; the agent that comes back later finds every copy expired and
    rejects it: its observer is never signalled for a stop that already failed."""
    fleet = await fleets.up(zones=1, per_zone=1)
    h1 = fleet.hosts[0]
    assert h1.agent_pid is not None
    psutil.Process(h1.agent_pid).terminate()
    wait_dead(h1.agent_pid)
    async with running(amend_config(controller_toml(fleet), stop={"resend_interval": 0.5})) as env:
        (mqtt,) = [d for d in env.parts.router.dispatchers if isinstance(d, MqttDispatcher)]
        target = ObserverTarget(host=h1.host, ip=h1.ip, home_path=h1.home)
        lines: list[str] = []

        async def log(line: str) -> None:
            lines.append(line)

        with pytest.raises(StepFailed, match="no result for command late-stop-1 from agent h1"):
            await mqtt.stop("late-stop-1", target, StopOptions(), log, time.monotonic() + 2)

        fleets.restart_agent(fleet, h1)
        await wait_for(
            lambda: "rejected command late-stop-1: expired at" in agent_log(fleet, h1), "not rejected"
        )
        assert not [x for x in agent_log(fleet, h1).splitlines() if "late-stop-1" in x and "accepted" in x]
        assert alive(h1.observer_pid) and "received SIGTERM" not in observer_log(h1)
