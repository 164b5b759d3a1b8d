"""The controller as a real process, killed with SIGKILL in the middle of a stop and started again: it
finishes the task, and no observer is signalled twice or sent a second command with a new id. Agentless
on SQLite and PostgreSQL; then through agents over MQTT, which answer the re-sent command from their
journal."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest

from obstop.controller.store import Store
from obstop.fakes.net import free_port
from tests.support.controller import amend_config, write_config
from tests.support.controller_process import ControllerProcess
from tests.support.fakes import Fakes, start_cluster
from tests.support.fleet import Fleets, agent_log, observer_log, wait_for
from tests.support.processes import alive, until, wait_dead


def signal_sent(ctl: ControllerProcess, task_id: int) -> bool:
    """Every observer has been sent SIGTERM (which they ignore) and no stop has ended."""
    stops = [s for s in ctl.task(task_id)["tasks"] if s["name"] == "Stop observer process"]
    if not all(s["status"] == "RUNNING" for s in stops):
        return False
    return all("sending SIGTERM" in text for text in ctl.logs(task_id, "Stop observer process"))


def prepare_started(ctl: ControllerProcess, task_id: int) -> bool:
    task = ctl.task(task_id)
    return any(s["name"] == "Prepare stop observer" and s["status"] != "PENDING" for s in task["tasks"])


CRASH_POINTS: dict[str, Callable[[ControllerProcess, int], bool]] = {
    "right-after-the-stop-call": lambda ctl, task_id: True,
    "while-preparing-observers": prepare_started,
    "while-stopping-processes": signal_sent,
}


@pytest.mark.parametrize("crash_point", list(CRASH_POINTS))
async def test_sigkill_mid_stop_and_restart_finishes_once(
    tmp_path: Path,
    fakes: Fakes,
    store_url: str,
    crash_point: str,
    controllers: Callable[..., ControllerProcess],
) -> None:
    # While stopping, the controller is killed with every SIGTERM sent and no observer gone: they ignore
    # it, so however long the restart takes, the resumed stops find them alive, send no second SIGTERM,
    # and escalate to SIGKILL term_timeout later.
    in_flight = crash_point == "while-stopping-processes"
    misbehave = {i: ["--ignore-sigterm"] for i in range(4)} if in_flight else None
    cluster = start_cluster(fakes, zones=2, per_zone=2, misbehave=misbehave)
    config = write_config(
        tmp_path,
        cluster,
        store_url,
        api={"listen": f"127.0.0.1:{free_port()}"},
        engine={"lease_seconds": 5},
        stop={"term_timeout": 3},
    )
    ctl = controllers(config)
    ctl.start()
    task_id = ctl.stop_cluster()

    until(lambda: CRASH_POINTS[crash_point](ctl, task_id), f"never reached {crash_point}", timeout=60)
    ctl.kill()
    ctl.start()
    until(lambda: ctl.task(task_id)["status"] != "RUNNING", "task did not finish after the restart", 60)

    task = ctl.task(task_id)
    assert task["status"] == "SUCCESSFUL", task
    assert not any(alive(p) for p in cluster.pids)
    for fake in cluster.fakes:
        log = (fake.home / "log" / "observer.log").read_text()
        assert log.count("received SIGTERM") == 1, log
    if in_flight:  # the resumed stop found its SIGTERM mark, waited, then sent the only SIGKILL
        for text in ctl.logs(task_id, "Stop observer process"):
            assert "SIGTERM was already sent to pid" in text and text.count("sending SIGTERM") == 1, text
            assert text.count("sending SIGKILL") == 1, text
    assert ctl.stop() == 0  # SIGTERM: a clean exit

    store = await Store.open(store_url)
    try:
        stops = [s["id"] for s in task["tasks"] if s["name"] == "Stop observer process"]
        commands = await store.commands.of_subtasks(stops)
        assert sorted(c.subtask_id for c in commands) == sorted(stops)  # one command id per observer
        assert all(c.result is not None and c.result["ok"] for c in commands)
    finally:
        await store.close()


async def test_controller_killed_mid_stop_resumes_through_the_agents(
    tmp_path: Path, fleets: Fleets, controllers: Callable[..., ControllerProcess]
) -> None:
    """The agents finish their stops while the controller is down. The restarted controller re-signs its
    commands (same ids, new timestamps): each agent takes the re-sent command as the one it already ran
    and answers with the recorded result from its journal, signalling nothing twice.

    The controller comes back under a new MQTT client id, so the results the agents published while it
    was down stay queued on its old broker session (on the same id they may reach it first, a race
    either way): the journal is then the only place its answers can come from."""
    fleet = await fleets.up(zones=2, per_zone=1, misbehave={h: ["--exit-delay", "1"] for h in ("h1", "h2")})
    config = amend_config(
        Path(fleet.dir) / "controller.toml", stop={"resend_interval": 0.5, "term_timeout": 10}
    )
    ctl = controllers(config)
    await asyncio.to_thread(ctl.start)
    task_id = await asyncio.to_thread(ctl.stop_cluster, 1, {"freeze": False})
    await wait_for(lambda: all("received SIGTERM" in observer_log(h) for h in fleet.hosts), "no SIGTERM")
    await asyncio.to_thread(ctl.kill)

    # while the controller is down, every observer exits and every agent records its stop's result
    for h in fleet.hosts:
        await asyncio.to_thread(wait_dead, h.observer_pid)
    await wait_for(
        lambda: all(": stopped" in agent_log(fleet, h) for h in fleet.hosts),
        "an agent never finished its stop",
    )
    amend_config(config, mqtt={"client_id": "obstop-controller-restarted"})
    await asyncio.to_thread(ctl.start)
    await asyncio.to_thread(
        until, lambda: ctl.task(task_id)["status"] != "RUNNING", "task did not finish after the restart", 60
    )

    assert ctl.task(task_id)["status"] == "SUCCESSFUL"
    stop_logs = "\n".join(await asyncio.to_thread(ctl.logs, task_id, "Stop observer process"))
    assert stop_logs.count("from its journal") == 2, stop_logs
    for h in fleet.hosts:
        assert f"agent {h.host} answered command" in stop_logs, stop_logs
        agent = agent_log(fleet, h)
        assert "seen again: answering the recorded result" in agent, agent
        assert "rejected command" not in agent
        assert observer_log(h).count("received SIGTERM") == 1, observer_log(h)
    assert await asyncio.to_thread(ctl.stop) == 0
