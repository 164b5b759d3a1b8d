"""Controller and agents over a real Mosquitto: 3 zones x 2 servers on 6 fake hosts with 6 agent processes,
stopped through the HTTP API; and the faults: an agent killed mid-stop, the broker restarted mid-stop,
an agent that is down."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

from obstop.fakes import hosts as fakehosts
from obstop.fakes.net import free_block
from tests.ctl import ADMIN, Env, amend_config, running
from tests.support import Mosquitto, alive, wait_dead

pytestmark = pytest.mark.mqtt


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    m = Mosquitto(tmp_path / "mosquitto").start()
    yield m
    m.stop()


async def fleet_up(
    tmp_path: Path,
    broker: Mosquitto,
    zones: int = 3,
    per_zone: int = 2,
    misbehave: dict[str, list[str]] | None = None,
) -> tuple[fakehosts.Fleet, Path]:
    d = tmp_path / "fleet"
    fleet = await asyncio.to_thread(
        fakehosts.up,
        d,
        zones=zones,
        servers_per_zone=per_zone,
        broker=broker.url,
        first_ip=free_block(zones * per_zone),
        misbehave=misbehave,
    )
    return fleet, d


@pytest.fixture
def cleanup(tmp_path: Path) -> Iterator[None]:
    yield
    fakehosts.down(tmp_path / "fleet")


def observer_log(h: fakehosts.HostState) -> str:
    return (Path(h.home) / "log" / "observer.log").read_text()


async def wait_for(cond: Callable[[], bool], what: str, timeout: float = 30) -> None:
    # another process's state (an observer's log): polled, bounded, without blocking the loop
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.02)


async def assert_all_stopped(env: Env, task_id: int, fleet: fakehosts.Fleet) -> None:
    task = await env.get(f"/api/v2/tasks/instances/{task_id}")
    assert task["status"] == "SUCCESSFUL", [(s["name"], s["status"]) for s in task["tasks"]]
    assert not any(alive(h.observer_pid) for h in fleet.hosts)
    c = await env.get("/api/v2/ob/clusters/1")
    assert c["status"] == "STOPPED"
    assert {s["status"] for z in c["zones"] for s in z["servers"]} == {"PROCESS_STOPPED"}
    for h in fleet.hosts:
        assert observer_log(h).count("received SIGTERM") == 1, (h.host, observer_log(h))


async def test_three_zones_of_two_servers_through_six_agents(
    tmp_path: Path, broker: Mosquitto, cleanup: None
) -> None:
    fleet, d = await fleet_up(tmp_path, broker)
    assert len({h.agent_pid for h in fleet.hosts}) == 6
    async with running(amend_config(d / "controller.toml")) as env:
        r = await env.stop()
        assert r.status_code == 200
        task_id = r.json()["data"]["id"]
        assert await env.wait(task_id) == "SUCCESSFUL"
        await assert_all_stopped(env, task_id, fleet)
        log = await env.log_of(task_id, "Stop observer process")
        assert log.count("accepted command") == 6 and log.count("stopped with SIGTERM") == 6


async def test_agent_killed_during_its_stop_and_restarted(
    tmp_path: Path, broker: Mosquitto, cleanup: None
) -> None:
    fleet, d = await fleet_up(tmp_path, broker, zones=2, per_zone=1, misbehave={"h1": ["--exit-delay", "3"]})
    h1 = fleet.hosts[0]
    async with running(amend_config(d / "controller.toml", stop={"resend_interval": 0.5})) as env:
        task_id = (await env.stop()).json()["data"]["id"]
        await wait_for(lambda: "received SIGTERM" in observer_log(h1), "h1's observer never got SIGTERM")
        assert h1.agent_pid is not None
        psutil.Process(h1.agent_pid).send_signal(signal.SIGKILL)
        wait_dead(h1.agent_pid)
        fakehosts.start_agent(h1, Path(d) / "hosts" / "h1", Path(d) / "keys", broker.url)
        fleet.save()

        assert await env.wait(task_id) == "SUCCESSFUL"
        await assert_all_stopped(env, task_id, fleet)
        agent_log = (Path(d) / "hosts" / "h1" / "agent.log").read_text()
        assert "cut off by a restart" in agent_log


async def test_broker_restarted_during_stop(tmp_path: Path, broker: Mosquitto, cleanup: None) -> None:
    fleet, d = await fleet_up(
        tmp_path, broker, zones=2, per_zone=1, misbehave={h: ["--exit-delay", "1.5"] for h in ("h1", "h2")}
    )
    async with running(amend_config(d / "controller.toml", stop={"resend_interval": 0.5})) as env:
        task_id = (await env.stop()).json()["data"]["id"]
        await wait_for(lambda: all("received SIGTERM" in observer_log(h) for h in fleet.hosts), "no SIGTERM")
        broker.restart()

        assert await env.wait(task_id) == "SUCCESSFUL"
        await assert_all_stopped(env, task_id, fleet)


async def test_agent_down_fails_in_its_timeout_then_retry_succeeds(
    tmp_path: Path, broker: Mosquitto, cleanup: None
) -> None:
    fleet, d = await fleet_up(tmp_path, broker, zones=2, per_zone=1)
    h2 = fleet.hosts[1]
    assert h2.agent_pid is not None
    psutil.Process(h2.agent_pid).terminate()  # a clean stop: it says offline
    wait_dead(h2.agent_pid)
    config = amend_config(d / "controller.toml", stop={"subtask_timeout": 4, "resend_interval": 0.5})
    async with running(config) as env:
        task_id = (await env.stop()).json()["data"]["id"]
        assert await env.wait(task_id) == "FAILED"
        log = await env.log_of(task_id, "Prepare stop observer")
        assert "agent h2 offline since" in log
        assert alive(h2.observer_pid)

        fakehosts.start_agent(h2, Path(d) / "hosts" / "h2", Path(d) / "keys", broker.url)
        fleet.save()
        r = await env.client.post(f"/api/v2/tasks/instances/{task_id}/retry", headers=ADMIN)
        assert r.status_code == 200
        assert await env.wait(task_id) == "SUCCESSFUL"
        await assert_all_stopped(env, task_id, fleet)


async def test_controller_killed_mid_stop_resumes_through_the_agents(
    tmp_path: Path, broker: Mosquitto, cleanup: None
) -> None:
    """After a restart the controller re-signs its commands (same ids, new timestamps): agents must take
    them as the same commands, not as conflicting ones, and signal nothing twice."""
    import tomllib

    from tests.test_controller_durability import ControllerProcess

    fleet, d = await fleet_up(
        tmp_path, broker, zones=2, per_zone=1, misbehave={h: ["--exit-delay", "3"] for h in ("h1", "h2")}
    )
    config = amend_config(d / "controller.toml", stop={"resend_interval": 0.5, "term_timeout": 10})
    port = int(tomllib.loads(config.read_text())["api"]["listen"].rsplit(":", 1)[1])
    ctl = ControllerProcess(config, port, tmp_path / "controller.log")
    await asyncio.to_thread(ctl.start)
    task_id = (
        await asyncio.to_thread(ctl.http.post, "/api/v2/ob/clusters/1/stop", json={"freeze": False})
    ).json()["data"]["id"]
    await wait_for(lambda: all("received SIGTERM" in observer_log(h) for h in fleet.hosts), "no SIGTERM")
    await asyncio.to_thread(ctl.kill)
    await asyncio.to_thread(ctl.start)
    await wait_for(lambda: ctl.task(task_id)["status"] != "RUNNING", "task did not finish", timeout=60)
    try:
        assert ctl.task(task_id)["status"] == "SUCCESSFUL"
        for h in fleet.hosts:
            assert observer_log(h).count("received SIGTERM") == 1
            assert "rejected command" not in (Path(d) / "hosts" / h.host / "agent.log").read_text()
    finally:
        await asyncio.to_thread(ctl.stop)
