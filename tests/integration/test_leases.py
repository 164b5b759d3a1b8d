"""Leases shared by several controllers on one PostgreSQL (issue 13), with the engine in this process:
expiry on the database's clock, a controller that loses a lease stops acting on its subtask, and a
lease that expires under another controller is reclaimed by a running one (not only at its start)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest

from obstop.controller.store import leases
from tests.support.controller import database, running, write_config
from tests.support.fakes import Fakes, start_cluster
from tests.support.lifecycle import until_subtask, wait_for
from tests.support.processes import alive

pytestmark = pytest.mark.postgres
LEASE = 2


@pytest.fixture
async def pg_url(tmp_path: Path) -> AsyncIterator[str]:
    async with database("postgres", tmp_path) as url:
        yield url


async def sql(url: str, query: str, *args: object) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(url.replace("postgresql://", "postgres://"))
    try:
        return list(await conn.fetch(query, *args))
    finally:
        await conn.close()


async def test_lease_expiry_is_on_the_database_clock(
    tmp_path: Path, fakes: Fakes, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A controller whose clock runs 10 minutes ahead still holds its leases for lease_seconds of the
    database's time: another controller would otherwise wait 10 minutes to take over from it."""
    monkeypatch.setattr(leases, "now", lambda: datetime.now(UTC) + timedelta(minutes=10))
    cluster = start_cluster(fakes, zones=1, per_zone=1, misbehave={0: ["--ignore-sigterm"]})
    config = write_config(
        tmp_path, cluster, pg_url, engine={"lease_seconds": LEASE}, stop={"term_timeout": 30}
    )
    async with running(config) as env:
        task_id = (await env.stop()).json()["data"]["id"]
        await until_subtask(env, task_id, "Stop observer process", "RUNNING")
        (row,) = await sql(
            pg_url,
            "SELECT EXTRACT(EPOCH FROM lease_expires - (now() AT TIME ZONE 'UTC')) AS left "
            "FROM subtasks WHERE task_id = $1 AND status = 'RUNNING'",
            task_id,
        )
        assert 0 < row["left"] <= LEASE, row["left"]


async def test_a_lost_lease_stops_the_step_and_an_expired_one_is_taken_back(
    tmp_path: Path, fakes: Fakes, pg_url: str
) -> None:
    """Another controller takes the lease of a stop waiting after its SIGTERM: this one stops working on
    it (no SIGKILL at its term_timeout, no finish). Once that controller's lease expires in turn, this
    one, still running, reclaims the subtask and resumes it with the same command id: the SIGTERM is
    not sent again, the escalation happens once, the task ends SUCCESSFUL."""
    cluster = start_cluster(fakes, zones=1, per_zone=1, misbehave={0: ["--ignore-sigterm"]})
    log = cluster.fakes[0].home / "log" / "observer.log"
    config = write_config(
        tmp_path, cluster, pg_url, engine={"lease_seconds": LEASE}, stop={"term_timeout": 4}
    )
    async with running(config) as env:
        task_id = (await env.stop()).json()["data"]["id"]
        sub = await until_subtask(env, task_id, "Stop observer process", "RUNNING")

        async def signalled() -> bool:
            return "received SIGTERM" in log.read_text()

        await wait_for(signalled, "no SIGTERM")
        await sql(
            pg_url,
            "UPDATE subtasks SET lease_owner = 'ctl-other', "
            "lease_expires = (now() AT TIME ZONE 'UTC') + interval '4 seconds' WHERE id = $1",
            sub["id"],
        )

        async def dropped() -> bool:
            return "controller ctl-test stops working on it" in await env.log_of(task_id, sub["name"])

        await wait_for(dropped, "the step went on under a lease that is no longer ours")
        # ctl-other holds it (and, here, does nothing): no SIGKILL from us meanwhile, no finish
        (row,) = await sql(pg_url, "SELECT status, lease_owner FROM subtasks WHERE id = $1", sub["id"])
        assert (row["status"], row["lease_owner"]) == ("RUNNING", "ctl-other")
        assert alive(cluster.pids[0]) and "SIGKILL" not in log.read_text()

        assert await env.wait(task_id, timeout=60) == "SUCCESSFUL"  # its lease expired: taken back
        text = await env.log_of(task_id, sub["name"])
        assert "resumed by ctl-test" in text and text.count("sending SIGTERM") == 1, text
        assert log.read_text().count("received SIGTERM") == 1
        assert not alive(cluster.pids[0])
        notes = [
            r["note"]
            for r in await sql(
                pg_url,
                "SELECT note FROM events WHERE entity = 'subtask' AND entity_id = $1 ORDER BY id",
                sub["id"],
            )
        ]
        assert [n for n in notes if n and n.startswith(("run ", "resumed "))] == [
            "run 1 by ctl-test",
            "resumed by ctl-test",
        ], notes
