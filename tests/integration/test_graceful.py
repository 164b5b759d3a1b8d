"""Graceful in SQL: the minor freeze and the checkpoint wait come before any signal; each can be skipped
or bounded; an unreachable cluster is stopped only with force. Fake observers answer OceanBase SQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from obstop.fakes.cluster import FakeCluster
from tests.support.controller import Env, running
from tests.support.fakes import Fakes
from tests.support.processes import alive
from tests.support.sqlcluster import PASSWORD, config, start


@pytest.fixture
def cluster_dir(tmp_path: Path) -> Iterator[Path]:
    FakeCluster.create(tmp_path / "cluster", password=PASSWORD, freeze_delay=0.3)
    yield tmp_path / "cluster"


def sigterm_times(fc: FakeCluster) -> list[float]:
    return [s.at for s in fc.statements() if s.sql == "SIGNAL SIGTERM"]


async def stop(env: Env, body: dict[str, Any] | None = None) -> int:
    r = await env.stop(body=body)
    assert r.status_code == 200, r.text
    return int(r.json()["data"]["id"])


async def test_freeze_and_checkpoint_wait_come_before_any_signal(
    tmp_path: Path, fakes: Fakes, cluster_dir: Path
) -> None:
    cluster = start(fakes, cluster_dir)
    fc = FakeCluster(cluster_dir)
    async with running(config(tmp_path, cluster)) as env:
        task_id = await stop(env)
        assert await env.wait(task_id) == "SUCCESSFUL"
        statements = fc.statements()
        (freeze,) = [s for s in statements if "MINOR FREEZE" in s.sql]
        for f in cluster.fakes:
            assert f"'{f.ip}:2882'" in freeze.sql
        kills = sigterm_times(fc)
        assert len(kills) == 3 and not any(alive(p) for p in cluster.pids)
        # every signal after the freeze came due (0.3 s) and the checkpoints were seen to move
        assert min(kills) >= freeze.at + 0.3
        log = await env.log_of(task_id, "Prepare stop observer")
        assert log.count("advanced") == 3 and "waiting for the checkpoint" in log
        cluster_log = await env.log_of(task_id, "Prepare stop cluster")
        assert "MINOR FREEZE" in cluster_log and PASSWORD not in cluster_log + log


async def test_freeze_false_skips_it(tmp_path: Path, fakes: Fakes, cluster_dir: Path) -> None:
    cluster = start(fakes, cluster_dir, n=2)
    async with running(config(tmp_path, cluster)) as env:
        task_id = await stop(env, {"freeze": False})
        assert await env.wait(task_id) == "SUCCESSFUL"
        assert not [s for s in FakeCluster(cluster_dir).statements() if "FREEZE" in s.sql]
        assert "freeze: false" in await env.log_of(task_id, "Prepare stop cluster")


async def test_freeze_that_never_completes_fails_after_its_timeout(
    tmp_path: Path, fakes: Fakes, cluster_dir: Path
) -> None:
    cluster = start(fakes, cluster_dir, n=2)
    FakeCluster(cluster_dir).configure(freeze_never=True)
    async with running(config(tmp_path, cluster)) as env:
        task_id = await stop(env, {"freezeTimeoutSeconds": 1})
        assert await env.wait(task_id) == "FAILED"
        task = await env.get(f"/api/v2/tasks/instances/{task_id}")
        failed = {s["name"] for s in task["tasks"] if s["status"] == "FAILED"}
        assert failed == {"Prepare stop observer"}
        log = await env.log_of(task_id, "Prepare stop observer")
        assert "not done after 1s" in log and "checkpoint_scn still" in log
        assert all(alive(p) for p in cluster.pids) and sigterm_times(FakeCluster(cluster_dir)) == []


async def test_wrong_credentials_fail_clearly_and_signal_nothing(
    tmp_path: Path, fakes: Fakes, cluster_dir: Path
) -> None:
    cluster = start(fakes, cluster_dir, n=2)
    async with running(config(tmp_path, cluster, password="not-the-password")) as env:
        task_id = await stop(env)
        assert await env.wait(task_id) == "FAILED"
        log = await env.log_of(task_id, "Prepare stop cluster")
        assert "Access denied for user root@sys" in log and "No process was touched" in log
        assert "not-the-password" not in log
        assert all(alive(p) for p in cluster.pids)


async def test_sql_failover_to_the_next_server(tmp_path: Path, fakes: Fakes, cluster_dir: Path) -> None:
    cluster = start(fakes, cluster_dir, n=2, misbehave={0: ["--sql-refuse"]})
    async with running(config(tmp_path, cluster)) as env:
        task_id = await stop(env)
        assert await env.wait(task_id) == "SUCCESSFUL"
        log = await env.log_of(task_id, "Prepare stop cluster")
        assert f"SQL connect to {cluster.fakes[0].ip}:2881 failed" in log
        assert f"SQL connected to {cluster.fakes[1].ip}:2881" in log


@pytest.mark.parametrize("force", [False, True])
async def test_unreachable_cluster_needs_force(
    tmp_path: Path, fakes: Fakes, cluster_dir: Path, force: bool
) -> None:
    cluster = start(fakes, cluster_dir, n=2, misbehave={0: ["--sql-refuse"], 1: ["--sql-refuse"]})
    async with running(config(tmp_path, cluster)) as env:
        task_id = await stop(env, {"force": force})
        log_of_prepare = lambda: env.log_of(task_id, "Prepare stop cluster")  # noqa: E731
        if force:
            assert await env.wait(task_id) == "SUCCESSFUL"
            assert "force: true" in await log_of_prepare()
            assert not any(alive(p) for p in cluster.pids)
        else:
            assert await env.wait(task_id) == "FAILED"
            log = await log_of_prepare()
            assert "no server of the cluster answered SQL" in log and "force: true" in log
            assert all(alive(p) for p in cluster.pids)
