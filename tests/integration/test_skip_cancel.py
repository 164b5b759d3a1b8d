"""Skip and cancel mid-stop, agentless: a skipped subtask is done without running, and statuses never
claim more than a probe finds; a cancelled one ends FAILED (CANCEL), and once the cancel is journalled
no signal is ever sent for it."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from obstop.fakes.cluster import FakeCluster
from tests.support.controller import ADMIN, database, running, write_config
from tests.support.fakes import Fakes, start_cluster
from tests.support.lifecycle import post, statuses, subtasks, task, until_subtask, wait_for
from tests.support.processes import alive, kill_tree_under
from tests.support.sqlcluster import PASSWORD
from tests.support.sqlcluster import config as sql_config
from tests.support.sqlcluster import start as start_sql_cluster

WATCH = {"probe_interval": 0.1, "report_interval": 0.5}


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    async with database(request.param, tmp_path) as url:
        yield url


async def test_skip_a_failed_stop_then_statuses_say_what_is_true(
    tmp_path: Path, fakes: Fakes, store_url: str
) -> None:
    cluster = start_cluster(fakes, zones=2, per_zone=1, misbehave={1: ["--linger-child", "60"]})
    config = write_config(tmp_path, cluster, store_url, stop={"port_timeout": 0.5}, watch=WATCH)
    async with running(config) as env:
        task_id = (await env.stop()).json()["data"]["id"]
        assert await env.wait(task_id) == "FAILED"
        (failed,) = [s for s in (await task(env, task_id))["tasks"] if s["status"] == "FAILED"]

        assert (await post(env, f"/api/v2/tasks/instances/{task_id}/subtasks/{failed['id']}/skip"))[
            "data"
        ] is None
        assert await env.wait(task_id) == "SUCCESSFUL"
        skipped = next(s for s in (await task(env, task_id))["tasks"] if s["id"] == failed["id"])
        assert skipped["status"] == "SUCCESSFUL" and skipped["operation"] == "SKIP"
        assert "skipped by the operator" in await env.log_of(task_id, "Stop observer process")
        # its observer is gone but a child holds its ports: never PROCESS_STOPPED while a port is held
        _, _, servers = await statuses(env)
        assert servers[100] == "PROCESS_STOPPED" and servers[101] == "UNAVAILABLE"

        kill_tree_under(cluster.fakes[1].home)

        async def all_stopped() -> bool:
            return await statuses(env) == (
                "STOPPED",
                {"STOPPED"},
                {100: "PROCESS_STOPPED", 101: "PROCESS_STOPPED"},
            )

        await wait_for(all_stopped, "statuses did not follow the ports being freed")


async def test_cancel_while_the_stop_waits_after_sigterm_never_sends_sigkill(
    tmp_path: Path, fakes: Fakes, store_url: str
) -> None:
    cluster = start_cluster(fakes, zones=1, per_zone=1, misbehave={0: ["--ignore-sigterm"]})
    term_timeout = 2.0
    config = write_config(tmp_path, cluster, store_url, stop={"term_timeout": term_timeout}, watch=WATCH)
    log = cluster.fakes[0].home / "log" / "observer.log"
    async with running(config) as env:
        task_id = (await env.stop()).json()["data"]["id"]
        sub = await until_subtask(env, task_id, "Stop observer process", "RUNNING")
        await wait_for(_async(lambda: "received SIGTERM" in log.read_text()), "no SIGTERM")
        signalled = time.monotonic()

        await post(env, f"/api/v2/tasks/instances/{task_id}/subtasks/{sub['id']}/cancel")
        assert await env.wait(task_id) == "FAILED"
        cancelled = next(s for s in (await task(env, task_id))["tasks"] if s["id"] == sub["id"])
        assert cancelled["status"] == "FAILED" and cancelled["operation"] == "CANCEL"
        text = await env.log_of(task_id, "Stop observer process")
        assert "cancelled after SIGTERM; no signal after the cancel" in text

        # past the moment SIGKILL would have been sent, the observer still runs: nothing was sent
        async def past_escalation() -> bool:
            assert alive(cluster.pids[0]), "the observer was killed after the cancel"
            return time.monotonic() > signalled + term_timeout + 1.0

        await wait_for(past_escalation, "never past the escalation time")
        (record,) = await env.store.commands.of_subtasks([sub["id"]])  # the id the stop was sent with
        marks = await env.store.commands.marks(record.command_id)
        assert [m.split(":")[0] for m in marks] == ["SIGTERM", "CANCEL"]

        # a cancelled subtask is retried only by an operator
        r = await env.client.post(
            f"/api/v2/tasks/instances/{task_id}/subtasks/{sub['id']}/retry", headers=ADMIN
        )
        assert r.status_code == 200 and r.json()["data"]["operation"] == "RETRY"
        assert await env.wait(task_id) == "SUCCESSFUL"  # SIGTERM ignored, then SIGKILL: stopped
        assert not alive(cluster.pids[0])


async def test_cancel_during_the_freeze_wait_signals_nothing(tmp_path: Path, fakes: Fakes) -> None:
    cluster_dir = tmp_path / "cluster"
    FakeCluster.create(cluster_dir, password=PASSWORD, freeze_never=True)
    cluster = start_sql_cluster(fakes, cluster_dir, n=2)
    async with running(sql_config(tmp_path, cluster, watch=WATCH)) as env:
        task_id = (await env.stop(body={"freezeTimeoutSeconds": 600})).json()["data"]["id"]
        await until_subtask(env, task_id, "Prepare stop observer", "RUNNING")

        async def both_waiting() -> bool:
            waits = subtasks(await task(env, task_id), "Prepare stop observer")
            return all(s["status"] == "RUNNING" for s in waits)

        await wait_for(both_waiting, "the freeze waits never ran")
        waits = subtasks(await task(env, task_id), "Prepare stop observer")
        for sub in waits:
            await post(env, f"/api/v2/tasks/instances/{task_id}/subtasks/{sub['id']}/cancel")
        again = await env.client.post(
            f"/api/v2/tasks/instances/{task_id}/subtasks/{waits[0]['id']}/cancel", headers=ADMIN
        )
        assert again.status_code == 400 and again.json()["error"]["code"] == 20003
        assert await env.wait(task_id) == "FAILED"
        t = await task(env, task_id)
        assert {s["operation"] for s in t["tasks"] if s["status"] == "FAILED"} == {"CANCEL"}
        assert all(alive(p) for p in cluster.pids)
        assert not [s for s in FakeCluster(cluster_dir).statements() if s.sql == "SIGNAL SIGTERM"]


def _async(cond):  # type: ignore[no-untyped-def]
    async def check() -> bool:
        return bool(cond())

    return check


async def test_a_cancel_taken_by_another_controller_reaches_the_one_running_it(
    tmp_path: Path, fakes: Fakes
) -> None:
    """Only the store says CANCELING (another controller's API took the cancel): the engine that holds the
    subtask's lease finds it at its next heartbeat, cancels the command and ends it FAILED (CANCEL)."""
    cluster = start_cluster(fakes, zones=1, per_zone=1, misbehave={0: ["--ignore-sigterm"]})
    config = write_config(
        tmp_path,
        cluster,
        f"sqlite:///{tmp_path}/c.db",
        stop={"term_timeout": 60},
        engine={"lease_seconds": 3},
    )
    async with running(config) as env:
        task_id = (await env.stop()).json()["data"]["id"]
        sub = await until_subtask(env, task_id, "Stop observer process", "RUNNING")
        await env.store.operations.cancel(task_id, sub["id"])  # not through this engine's service
        assert await env.wait(task_id, timeout=30) == "FAILED"
        cancelled = next(s for s in (await task(env, task_id))["tasks"] if s["id"] == sub["id"])
        assert cancelled["operation"] == "CANCEL"
        assert "no signal after the cancel" in await env.log_of(task_id, "Stop observer process")
        assert alive(cluster.pids[0])
