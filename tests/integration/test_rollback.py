"""Rolling a failed stop back, agentless (the controller runs the procedures itself): the DAG is walked
backwards, an observer this task stopped is started again (once), and statuses go back to what they were.
The freeze that never completes, and the retry that issues it again."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from obstop.fakes.cluster import FakeCluster
from tests.support.controller import ADMIN, Env, database, running, write_config
from tests.support.fakes import Fakes, start_cluster
from tests.support.lifecycle import post, starts, statuses, task, wait_for
from tests.support.processes import alive, kill_tree_under
from tests.support.sqlcluster import PASSWORD
from tests.support.sqlcluster import config as sql_config
from tests.support.sqlcluster import start as start_sql_cluster

WATCH = {"probe_interval": 0.1, "report_interval": 0.5}


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    async with database(request.param, tmp_path) as url:
        yield url


@pytest.fixture
def cluster_dir(tmp_path: Path) -> Iterator[Path]:
    FakeCluster.create(tmp_path / "cluster", password=PASSWORD, freeze_delay=0.3)
    yield tmp_path / "cluster"


def freezes(cluster_dir: Path) -> int:
    return sum("MINOR FREEZE" in s.sql for s in FakeCluster(cluster_dir).statements())


async def test_freeze_timeout_then_rollback_leaves_the_cluster_running(
    tmp_path: Path, fakes: Fakes, cluster_dir: Path
) -> None:
    cluster = start_sql_cluster(fakes, cluster_dir, n=3)
    FakeCluster(cluster_dir).configure(freeze_never=True)
    async with running(sql_config(tmp_path, cluster, watch=WATCH)) as env:
        r = await env.stop(body={"freezeTimeoutSeconds": 1})
        task_id = r.json()["data"]["id"]
        assert await env.wait(task_id) == "FAILED"
        failed = await task(env, task_id)
        assert failed["operation"] == "EXECUTE" and failed["prohibitRollback"] is False

        assert (await post(env, f"/api/v2/tasks/instances/{task_id}/rollback"))["data"] is None
        assert await env.wait(task_id) == "SUCCESSFUL"

        done = await task(env, task_id)
        assert done["operation"] == "ROLLBACK"
        assert {s["status"] for s in done["tasks"]} == {"PENDING"}
        ran = [s for s in done["tasks"] if s["runTime"] > 0]
        assert ran and {s["operation"] for s in ran} == {"ROLLBACK"}
        assert all(alive(p) for p in cluster.pids)
        assert [s for s in FakeCluster(cluster_dir).statements() if s.sql == "SIGNAL SIGTERM"] == []
        assert await statuses(env) == ("RUNNING", {"RUNNING"}, dict.fromkeys((100, 101, 102), "RUNNING"))
        # the history reads back: forward, the failure, then the walk backwards
        moves = [(e.entity, e.from_status, e.to_status) for e in await env.store.tasks.history(task_id)]
        assert ("task", "FAILED", "RUNNING") in moves and ("subtask", "SUCCESSFUL", "READY") in moves
        assert ("subtask", "FAILED", "READY") in moves and ("subtask", "RUNNING", "PENDING") in moves
        assert moves[-1] == ("task", "RUNNING", "SUCCESSFUL")
        log = await env.log_of(task_id, "Prepare stop cluster")
        assert "(ROLLBACK)" in log and "its status before this task" in log

        # rolled back: the cluster is free, and a rolled-back task is not retried
        r = await env.client.post(f"/api/v2/tasks/instances/{task_id}/retry", headers=ADMIN)
        assert r.status_code == 400 and r.json()["error"]["code"] == 20003


async def test_retry_after_a_lost_freeze_issues_the_freeze_again(
    tmp_path: Path, fakes: Fakes, cluster_dir: Path
) -> None:
    cluster = start_sql_cluster(fakes, cluster_dir, n=2)
    fc = FakeCluster(cluster_dir)
    fc.configure(freeze_never=True)
    async with running(sql_config(tmp_path, cluster, watch=WATCH)) as env:
        task_id = (await env.stop(body={"freezeTimeoutSeconds": 1})).json()["data"]["id"]
        assert await env.wait(task_id) == "FAILED"
        assert freezes(cluster_dir) == 1

        fc.configure(freeze_never=False)  # the cluster flushes again; the first freeze stays lost
        await post(env, f"/api/v2/tasks/instances/{task_id}/retry")
        assert await env.wait(task_id) == "SUCCESSFUL"
        assert freezes(cluster_dir) == 1 + 2  # one per retried server
        log = await env.log_of(task_id, "Prepare stop observer")
        assert log.count("issuing the minor freeze of") == 2 and log.count("advanced") == 2
        assert not any(alive(p) for p in cluster.pids)


async def test_rollback_starts_again_only_what_this_stop_stopped(
    tmp_path: Path, fakes: Fakes, store_url: str
) -> None:
    """Three servers: two stop, one's stop fails (a child of the observer keeps its ports). Rolled back,
    every observer this task stopped is started once, from its home, and statuses are as before."""
    cluster = start_cluster(fakes, zones=3, per_zone=1, misbehave={1: ["--linger-child", "60"]})
    config = write_config(tmp_path, cluster, store_url, stop={"port_timeout": 0.5}, watch=WATCH)
    async with running(config) as env:
        before = await statuses(env)
        task_id = (await env.stop()).json()["data"]["id"]
        assert await env.wait(task_id) == "FAILED"
        t = await task(env, task_id)
        assert [s["name"] for s in t["tasks"] if s["status"] == "FAILED"] == ["Stop observer process"]
        assert not any(alive(p) for p in cluster.pids)
        # the task ended: its cluster is free and shows what the servers are, never STOPPING
        await wait_for(lambda: _not_transient(env), "the cluster stayed STOPPING after its task failed")

        kill_tree_under(cluster.fakes[1].home)  # the cause goes away: the lingering child
        await post(env, f"/api/v2/tasks/instances/{task_id}/rollback")
        assert await env.wait(task_id) == "SUCCESSFUL"

        assert [starts(f.home) for f in cluster.fakes] == [2, 2, 2]  # the first start, and one again
        for f, old in zip(cluster.fakes, cluster.pids, strict=True):
            pid = f.pid()
            assert pid is not None and pid != old and alive(pid)
        assert await statuses(env) == before
        log = await env.log_of(task_id, "Stop observer process")
        assert log.count("starting it again") == 3 and log.count("started again") == 3


async def _not_transient(env: Env) -> bool:
    status, zones, servers = await statuses(env)
    transient = {"STOPPING", "STARTING", "PROCESS_STOPPING"}
    return status not in transient and not (zones | set(servers.values())) & transient


async def test_retry_of_prepare_stop_cluster_issues_the_freeze(
    tmp_path: Path, fakes: Fakes, cluster_dir: Path
) -> None:
    cluster = start_sql_cluster(fakes, cluster_dir, n=2)
    config = sql_config(tmp_path, cluster, password="not-the-password", watch=WATCH)
    async with running(config) as env:
        task_id = (await env.stop()).json()["data"]["id"]
        assert await env.wait(task_id) == "FAILED"
        assert freezes(cluster_dir) == 0 and all(alive(p) for p in cluster.pids)

        (tmp_path / "sys.password").write_text(PASSWORD + "\n")  # the operator fixes the credentials
        await post(env, f"/api/v2/tasks/instances/{task_id}/retry")
        assert await env.wait(task_id) == "SUCCESSFUL"
        assert freezes(cluster_dir) == 1
        log = await env.log_of(task_id, "Prepare stop cluster")
        assert "run 2 (RETRY)" in log and "minor freeze issued for 2 server(s)" in log


async def test_a_partly_stopped_cluster_is_frozen_only_where_it_runs(
    tmp_path: Path, fakes: Fakes, cluster_dir: Path
) -> None:
    import os
    import signal

    from tests.support.processes import wait_dead

    cluster = start_sql_cluster(fakes, cluster_dir, n=2)
    async with running(sql_config(tmp_path, cluster, watch=WATCH)) as env:
        os.kill(cluster.pids[0], signal.SIGKILL)
        wait_dead(cluster.pids[0])

        async def seen() -> bool:
            return (await statuses(env))[2][100] == "PROCESS_STOPPED"

        await wait_for(seen, "the killed observer never showed PROCESS_STOPPED")
        task_id = (await env.stop()).json()["data"]["id"]
        assert await env.wait(task_id) == "SUCCESSFUL"
        (freeze,) = [s.sql for s in FakeCluster(cluster_dir).statements() if "MINOR FREEZE" in s.sql]
        assert cluster.fakes[1].ip in freeze and cluster.fakes[0].ip not in freeze
        assert await statuses(env) == (
            "STOPPED",
            {"STOPPED"},
            {100: "PROCESS_STOPPED", 101: "PROCESS_STOPPED"},
        )
