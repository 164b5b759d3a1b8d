"""Statuses follow reality, agentless (the controller watches the observers itself): an observer killed or
started outside obstop shows in the API within a report interval; a cluster whose task ended is never
left STOPPING; a partly stopped cluster can be stopped (and started) again."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from obstop.fakes.cluster import FakeCluster
from obstop.fakes.install import relaunch
from tests.support.controller import ADMIN, Env, running, write_config
from tests.support.fakes import Fakes, start_cluster
from tests.support.lifecycle import post, statuses, wait_for
from tests.support.processes import wait_dead
from tests.support.sqlcluster import PASSWORD
from tests.support.sqlcluster import config as sql_config
from tests.support.sqlcluster import start as start_sql_cluster

WATCH = {"probe_interval": 0.1, "report_interval": 0.5}


async def until(env: Env, wanted: tuple[str, set[str], dict[int, str]], what: str) -> None:
    async def there() -> bool:
        return await statuses(env) == wanted

    await wait_for(there, f"{what}: statuses are {await statuses(env)}, not {wanted}", timeout=20)


async def test_observers_killed_and_started_outside_obstop_show_in_the_api(
    tmp_path: Path, fakes: Fakes
) -> None:
    cluster = start_cluster(fakes, zones=2, per_zone=1)
    async with running(write_config(tmp_path, cluster, f"sqlite:///{tmp_path}/c.db", watch=WATCH)) as env:
        await until(env, ("RUNNING", {"RUNNING"}, {100: "RUNNING", 101: "RUNNING"}), "at first")
        os.kill(cluster.pids[1], signal.SIGKILL)  # an operator, or a crash
        wait_dead(cluster.pids[1])
        await until(
            env, ("UNAVAILABLE", {"RUNNING", "STOPPED"}, {100: "RUNNING", 101: "PROCESS_STOPPED"}), "killed"
        )
        moves = [(e.entity, e.from_status, e.to_status, e.note) for e in await _untasked(env)]
        assert ("server", "RUNNING", "PROCESS_STOPPED", "observed") in moves

        relaunch(cluster.fakes[1].home)  # started by hand, from its home
        await until(env, ("RUNNING", {"RUNNING"}, {100: "RUNNING", 101: "RUNNING"}), "started again")

        # a partly stopped cluster can be stopped: the stopped one is left as it is
        os.kill(cluster.pids[0], signal.SIGKILL)
        wait_dead(cluster.pids[0])
        await until(
            env, ("UNAVAILABLE", {"RUNNING", "STOPPED"}, {100: "PROCESS_STOPPED", 101: "RUNNING"}), "one"
        )
        task_id = (await env.stop()).json()["data"]["id"]
        assert await env.wait(task_id) == "SUCCESSFUL"
        assert "already stopped" in await env.log_of(task_id, "Stop observer process")
        assert await statuses(env) == (
            "STOPPED",
            {"STOPPED"},
            {100: "PROCESS_STOPPED", 101: "PROCESS_STOPPED"},
        )


async def _untasked(env: Env) -> list:  # type: ignore[type-arg]
    import sqlalchemy as sa

    from obstop.controller.store.models import HistoryEvent

    async with env.store.db.tx() as s:
        return list((await s.scalars(sa.select(HistoryEvent).where(HistoryEvent.task_id.is_(None)))).all())


async def test_a_failed_stop_leaves_no_transient_status_and_frees_the_cluster(
    tmp_path: Path, fakes: Fakes
) -> None:
    cluster_dir = tmp_path / "cluster"
    FakeCluster.create(cluster_dir, password=PASSWORD, freeze_never=True)
    cluster = start_sql_cluster(fakes, cluster_dir, n=2, misbehave={0: ["--exit-delay", "2"]})
    async with running(sql_config(tmp_path, cluster, watch=WATCH)) as env:
        first = (await env.stop(body={"freezeTimeoutSeconds": 1})).json()["data"]["id"]
        assert await env.wait(first) == "FAILED"
        # its servers never stopped: the cluster shows RUNNING again, not STOPPING
        await until(env, ("RUNNING", {"RUNNING"}, {100: "RUNNING", 101: "RUNNING"}), "after the failure")

        # the failed task no longer holds the cluster: a new stop is taken (without the freeze this time)
        second = (await env.stop(body={"freeze": False})).json()
        assert second["successful"], second
        # and while the new one holds it (its first observer takes 2 s to exit), the old one cannot
        # take it back
        for op in ("rollback", "retry"):
            r = await env.client.post(f"/api/v2/tasks/instances/{first}/{op}", headers=ADMIN)
            assert r.status_code == 409 and r.json()["error"]["code"] == 50002, r.text
            assert f"held by task {second['data']['id']}" in r.json()["error"]["message"]
        assert await env.wait(second["data"]["id"]) == "SUCCESSFUL"

        # free again: the old one rolls back, and (its observers stopped since) claims nothing untrue
        await post(env, f"/api/v2/tasks/instances/{first}/rollback")
        assert await env.wait(first) == "SUCCESSFUL"
        assert await statuses(env) == (
            "STOPPED",
            {"STOPPED"},
            {100: "PROCESS_STOPPED", 101: "PROCESS_STOPPED"},
        )
        assert "but is PROCESS_STOPPED now" in await env.log_of(first, "Prepare stop observer")
