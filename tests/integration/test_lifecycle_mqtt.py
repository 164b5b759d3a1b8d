"""The lifecycle through agents over a real Mosquitto (one agent process per fake host): start after stop,
a rollback that starts stopped observers again, a cancel that reaches an agent mid-wait (it stops
waiting and never signals again), and statuses that follow what the agents see."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from obstop.fakes import hosts as fakehosts
from obstop.fakes.install import relaunch
from tests.support.controller import Env, amend_config, running
from tests.support.fakes import fresh_block
from tests.support.lifecycle import (
    post,
    starts,
    statuses,
    task,
    until_subtask,
    wait_for,
)
from tests.support.mosquitto import Mosquitto
from tests.support.processes import alive, kill_tree_under, wait_dead

pytestmark = pytest.mark.mqtt

WATCH = {"probe_interval": 0.1, "report_interval": 0.5}


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    m = Mosquitto(tmp_path / "mosquitto").start()
    yield m
    m.stop()


@pytest.fixture
def fleet_dir(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path / "fleet"
    fakehosts.down(tmp_path / "fleet")


async def fleet_up(
    d: Path, broker: Mosquitto, zones: int, per_zone: int, misbehave: dict[str, list[str]] | None = None
) -> fakehosts.Fleet:
    return await asyncio.to_thread(
        fakehosts.up,
        d,
        zones=zones,
        servers_per_zone=per_zone,
        broker=broker.url,
        first_ip=fresh_block(zones * per_zone),
        misbehave=misbehave,
    )


def homes(fleet: fakehosts.Fleet) -> list[Path]:
    return [Path(h.home) for h in fleet.hosts]


def agent_log(d: Path, host: str) -> str:
    return (d / "hosts" / host / "agent.log").read_text()


async def test_stop_then_start_through_agents(broker: Mosquitto, fleet_dir: Path) -> None:
    fleet = await fleet_up(fleet_dir, broker, zones=2, per_zone=1)
    async with running(amend_config(fleet_dir / "controller.toml", watch=WATCH)) as env:
        stop_id = (await env.stop()).json()["data"]["id"]
        assert await env.wait(stop_id) == "SUCCESSFUL"
        start_id = (await post(env, "/api/v2/ob/clusters/1/start"))["data"]["id"]
        assert await env.wait(start_id) == "SUCCESSFUL"
        assert [starts(h) for h in homes(fleet)] == [2, 2]
        assert await statuses(env) == ("RUNNING", {"RUNNING"}, {1: "RUNNING", 2: "RUNNING"})
        log = await env.log_of(start_id, "Start observer process")
        assert log.count("accepted command") == 2 and log.count("answering SQL") == 2
        for h in fleet.hosts:
            assert "started" in agent_log(fleet_dir, h.host)


async def test_rollback_through_agents_starts_each_stopped_observer_once(
    broker: Mosquitto, fleet_dir: Path
) -> None:
    fleet = await fleet_up(fleet_dir, broker, zones=3, per_zone=1, misbehave={"h2": ["--linger-child", "60"]})
    config = amend_config(fleet_dir / "controller.toml", watch=WATCH, stop={"port_timeout": 0.5})
    async with running(config) as env:
        task_id = (await env.stop(body={"freeze": False})).json()["data"]["id"]
        assert await env.wait(task_id) == "FAILED"
        h2 = Path(fleet.hosts[1].home)
        kill_tree_under(h2)  # the lingering child goes, and (for a quick teardown) so does the habit
        persisted = h2 / "etc" / "observer.config.bin"
        persisted.write_text(persisted.read_text().replace(', "--linger-child", "60"', ""))
        await post(env, f"/api/v2/tasks/instances/{task_id}/rollback")
        assert await env.wait(task_id) == "SUCCESSFUL"
        assert [starts(h) for h in homes(fleet)] == [2, 2, 2]
        assert await statuses(env) == ("RUNNING", {"RUNNING"}, {1: "RUNNING", 2: "RUNNING", 3: "RUNNING"})


async def test_cancel_reaches_the_agent_mid_wait_and_it_never_signals_again(
    broker: Mosquitto, fleet_dir: Path
) -> None:
    fleet = await fleet_up(fleet_dir, broker, zones=1, per_zone=1, misbehave={"h1": ["--ignore-sigterm"]})
    term_timeout = 2.0
    config = amend_config(fleet_dir / "controller.toml", watch=WATCH, stop={"term_timeout": term_timeout})
    home = Path(fleet.hosts[0].home)
    async with running(config) as env:
        task_id = (await env.stop(body={"freeze": False})).json()["data"]["id"]
        sub = await until_subtask(env, task_id, "Stop observer process", "RUNNING")

        async def signalled() -> bool:
            return "received SIGTERM" in (home / "log" / "observer.log").read_text()

        await wait_for(signalled, "no SIGTERM")
        sent = time.monotonic()
        await post(env, f"/api/v2/tasks/instances/{task_id}/subtasks/{sub['id']}/cancel")
        assert await env.wait(task_id) == "FAILED"
        log = await env.log_of(task_id, "Stop observer process")
        assert "on h1: cancelled after SIGTERM; no signal after the cancel" in log
        t = await task(env, task_id)
        assert next(s for s in t["tasks"] if s["id"] == sub["id"])["operation"] == "CANCEL"

        async def past_escalation() -> bool:
            assert alive(fleet.hosts[0].observer_pid), "the agent killed the observer after the cancel"
            return time.monotonic() > sent + term_timeout + 1.0

        await wait_for(past_escalation, "never past the escalation time")
        text = agent_log(fleet_dir, "h1")
        assert "cancelled after SIGTERM" in text and "SIGKILL" not in text
    kill_tree_under(home)  # it ignores SIGTERM: not worth the teardown's wait


async def test_statuses_follow_what_the_agents_see(broker: Mosquitto, fleet_dir: Path) -> None:
    fleet = await fleet_up(fleet_dir, broker, zones=2, per_zone=1)
    async with running(amend_config(fleet_dir / "controller.toml", watch=WATCH)) as env:
        await _until(env, ("RUNNING", {"RUNNING"}, {1: "RUNNING", 2: "RUNNING"}))
        pid = fleet.hosts[0].observer_pid
        os.kill(pid, signal.SIGKILL)
        wait_dead(pid)
        await _until(env, ("UNAVAILABLE", {"RUNNING", "STOPPED"}, {1: "PROCESS_STOPPED", 2: "RUNNING"}))
        relaunch(Path(fleet.hosts[0].home))
        await _until(env, ("RUNNING", {"RUNNING"}, {1: "RUNNING", 2: "RUNNING"}))


async def _until(env: Env, wanted: tuple[str, set[str], dict[int, str]]) -> None:
    async def there() -> bool:
        return await statuses(env) == wanted

    await wait_for(there, f"statuses never became {wanted}", timeout=20)
