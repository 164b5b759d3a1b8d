"""Graceful in SQL: the minor freeze and the checkpoint wait come before any signal; each can be skipped
or bounded; an unreachable cluster is stopped only with force. Fake observers answer OceanBase SQL."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from obstop.fakes.cluster import FakeCluster, Statement
from tests.support.controller import Env, running
from tests.support.fakes import Fakes
from tests.support.lifecycle import post, subtasks, task, wait_for
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


def checkpoint_polls(fc: FakeCluster, after: float) -> list[Statement]:
    return [s for s in fc.statements() if "__all_virtual_ls_info" in s.sql and s.at > after]


async def test_the_waits_share_one_session_and_one_statement_per_poll(
    tmp_path: Path, fakes: Fakes, cluster_dir: Path
) -> None:
    """Issue 12: one pooled SQL session per cluster for its servers' checkpoint waits, and one statement
    per poll answering every waiting server (not a session and a poller per server)."""
    cluster = start(fakes, cluster_dir, n=4)
    fc = FakeCluster(cluster_dir)
    fc.configure(freeze_delay=1.0)
    keys = {f"'{f.ip}', 2882" for f in cluster.fakes}
    async with running(config(tmp_path, cluster)) as env:
        task_id = await stop(env)
        assert await env.wait(task_id) == "SUCCESSFUL"
        statements = fc.statements()
        (freeze,) = [s for s in statements if "MINOR FREEZE" in s.sql]
        # before the freeze, every target's checkpoint in one statement
        (read,) = [s for s in statements if "__all_virtual_ls_info" in s.sql and s.at <= freeze.at]
        assert all(k in read.sql for k in keys)
        polls = checkpoint_polls(fc, freeze.at)
        assert len({p.conn for p in polls}) == 1  # one session for all the waits
        # the checkpoints moved 1 s after the freeze, when all four waited: a poll asked for all four
        assert any(all(k in p.sql for k in keys) for p in polls)
        assert all(any(k in p.sql for p in polls) for k in keys)
        log = await env.log_of(task_id, "Prepare stop observer")
        assert log.count("advanced") == 4 and log.count("waiting for the checkpoint") == 4


async def test_a_cancelled_wait_leaves_the_poll_and_the_last_one_closes_it(
    tmp_path: Path, fakes: Fakes, cluster_dir: Path
) -> None:
    cluster = start(fakes, cluster_dir, n=2)
    fc = FakeCluster(cluster_dir)
    fc.configure(freeze_never=True)
    async with running(config(tmp_path, cluster)) as env:
        task_id = await stop(env, {"freezeTimeoutSeconds": 600})

        async def both_waiting() -> bool:
            log = await env.log_of(task_id, "Prepare stop observer")
            return log.count("waiting for the checkpoint") == 2

        await wait_for(both_waiting, "the freeze waits never began")
        waits = subtasks(await task(env, task_id), "Prepare stop observer")
        path = f"/api/v2/tasks/instances/{task_id}/subtasks/{waits[0]['id']}"
        log = (await env.get(f"{path}/log"))["log"]
        first, second = (f"'{f.ip}', 2882" for f in cluster.fakes)
        if f"checkpoint of {cluster.fakes[1].ip}:2882" in log:
            first, second = second, first
        await post(env, f"{path}/cancel")
        await wait_for(_status(env, task_id, waits[0]["id"], "FAILED"), "the cancel never ended it")
        cancelled_at = time.time()
        await wait_for(lambda: _polled_after(fc, cancelled_at), "the other wait stopped polling")
        later = checkpoint_polls(fc, cancelled_at + 0.05)
        assert later and all(second in p.sql and first not in p.sql for p in later)
        (freeze,) = [s for s in fc.statements() if "MINOR FREEZE" in s.sql]
        assert len({p.conn for p in checkpoint_polls(fc, freeze.at)}) == 1  # still the one session
        await post(env, f"/api/v2/tasks/instances/{task_id}/subtasks/{waits[1]['id']}/cancel")
        assert await env.wait(task_id) == "FAILED"

        async def closed() -> bool:
            conn = checkpoint_polls(fc, freeze.at)[0].conn
            return any(c.id == conn and c.closed is not None for c in fc.connections())

        await wait_for(closed, "the session stayed open with nobody waiting")
        assert all(alive(p) for p in cluster.pids) and sigterm_times(fc) == []


def _status(env: Env, task_id: int, sub_id: int, status: str) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return any(s["id"] == sub_id and s["status"] == status for s in (await task(env, task_id))["tasks"])

    return check


async def _polled_after(fc: FakeCluster, at: float) -> bool:
    return bool(checkpoint_polls(fc, at + 0.05))


async def test_the_session_falls_over_when_its_server_dies_mid_wait(
    tmp_path: Path, fakes: Fakes, cluster_dir: Path
) -> None:
    """The pooled session fails over as a server's own did: the waits go on through another server, the
    dead server's wait ends (it has no log stream now), the other's still ends at its own deadline."""
    cluster = start(fakes, cluster_dir, n=2)
    fc = FakeCluster(cluster_dir)
    fc.configure(freeze_never=True)
    async with running(config(tmp_path, cluster)) as env:
        task_id = await stop(env, {"freezeTimeoutSeconds": 4})

        async def polling() -> bool:
            freezes = [s for s in fc.statements() if "MINOR FREEZE" in s.sql]
            return bool(freezes and checkpoint_polls(fc, freezes[0].at))

        await wait_for(polling, "the checkpoint waits never polled")
        (freeze,) = [s for s in fc.statements() if "MINOR FREEZE" in s.sql]
        serving = checkpoint_polls(fc, freeze.at)[0].server  # the observer the session reached
        dead = next(i for i, f in enumerate(cluster.fakes) if serving == f"{f.ip}:2881")
        other = cluster.fakes[1 - dead]
        os.kill(cluster.pids[dead], signal.SIGKILL)
        assert await env.wait(task_id) == "FAILED"
        servers = {p.server for p in checkpoint_polls(fc, freeze.at)}
        assert servers == {serving, f"{other.ip}:2881"}
        log = await env.log_of(task_id, "Prepare stop observer")
        assert f"SQL connected to {other.ip}:2881" in log
        assert f"{cluster.fakes[dead].ip}:2882 has no log stream now" in log
        assert f"minor freeze of {other.ip}:2882 not done after 4s" in log
        assert alive(cluster.pids[1 - dead]) and sigterm_times(fc) == []
