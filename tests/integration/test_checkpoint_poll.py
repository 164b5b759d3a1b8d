"""The per-cluster checkpoint poller against a fake cluster's SQL over the MySQL protocol (mysql-mimic,
in this process): each wait ends at its own deadline in a shared poll; a wait polls alone when the
poller is not running; a cluster that refuses the credentials fails every wait it concerns."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from mysql_mimic import MysqlServer

from obstop.controller.config import ClusterSQLConfig
from obstop.controller.errors import StepFailed
from obstop.controller.steps.checkpoints import CheckpointPoller, Waiter
from obstop.controller.steps.cluster_sql import SQLUnavailable
from obstop.fakes.cluster import BASE_SCN, FakeCluster
from obstop.fakes.net import free_port
from obstop.fakes.sql import Identity, ObSession

PASSWORD = "s3cret-sys"
A, B = ("127.0.0.1", 2882), ("127.0.0.2", 2882)


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[tuple[FakeCluster, int]]:
    fc = FakeCluster.create(tmp_path / "cluster", password=PASSWORD, freeze_delay=0.3)
    fc.register_all([(ip, port, 0, "zone1") for ip, port in (A, B)], os.getpid())
    port = free_port()
    server = MysqlServer(
        session_factory=lambda: ObSession(fc, f"127.0.0.1:{port}"), identity_provider=Identity(fc)
    )
    await server.start_server(host="127.0.0.1", port=port)
    try:
        yield fc, port
    finally:
        server.close()


def sql_config(tmp_path: Path, password: str = PASSWORD) -> ClusterSQLConfig:
    pw = tmp_path / "sys.password"
    pw.write_text(password + "\n")
    return ClusterSQLConfig(cluster_id=1, user="root@sys", password_file=pw)


class Lines:
    def __init__(self) -> None:
        self.lines: list[str] = []

    async def __call__(self, line: str) -> None:
        self.lines.append(line)


async def test_each_wait_ends_at_its_own_deadline_in_one_shared_poll(
    tmp_path: Path, cluster: tuple[FakeCluster, int]
) -> None:
    fc, port = cluster  # no freeze issued: the checkpoints never move
    poller, stopping = CheckpointPoller(), asyncio.Event()

    async def endpoints() -> list[tuple[str, int]]:
        return [("127.0.0.1", port)]

    logs = Lines(), Lines()
    short = Waiter(*A, BASE_SCN, 0.5, logs[0], frozenset({"127.0.0.1:2882", "127.0.0.2:2882"}))
    long = Waiter(*B, BASE_SCN, 1.5, logs[1])
    cfg = sql_config(tmp_path)
    ended: dict[str, float] = {}

    async def wait(w: Waiter) -> None:
        with pytest.raises(StepFailed) as failed:
            await poller.wait(1, cfg, endpoints, w)
        ended[w.key] = time.monotonic() - w.started
        assert f"minor freeze of {w.key} not done after {w.timeout_s:g}s" in failed.value.message

    async with asyncio.TaskGroup() as tg:
        tg.create_task(poller.run(stopping))
        await asyncio.gather(wait(short), wait(long))
        stopping.set()
    assert 0.5 <= ended["127.0.0.1:2882"] < 1.5 <= ended["127.0.0.2:2882"]
    polls = [s for s in fc.statements() if "__all_virtual_ls_info" in s.sql]
    assert len({s.conn for s in polls}) == 1 and len(fc.connections()) == 1
    both = [s for s in polls if "'127.0.0.1', 2882" in s.sql and "'127.0.0.2', 2882" in s.sql]
    assert both and len(polls) < 20  # one statement per poll for both, with backoff
    for _ in range(100):  # the fake records the close in its own time
        if fc.connections()[0].closed is not None:
            break
        await asyncio.sleep(0.02)
    assert fc.connections()[0].closed is not None  # nobody waits any more
    assert "SQL connected to 127.0.0.1" in "\n".join(logs[0].lines)


async def test_a_wait_polls_alone_when_the_poller_is_not_running(
    tmp_path: Path, cluster: tuple[FakeCluster, int]
) -> None:
    fc, port = cluster
    fc.freeze([A])  # due in 0.3 s

    async def endpoints() -> list[tuple[str, int]]:
        return [("127.0.0.1", port)]

    log = Lines()
    await CheckpointPoller().wait(1, sql_config(tmp_path), endpoints, Waiter(*A, BASE_SCN, 10, log))
    assert any(f"advanced {BASE_SCN} -> {BASE_SCN + 1_000_000}" in x for x in log.lines)


async def test_refused_credentials_fail_every_wait_of_the_session(
    tmp_path: Path, cluster: tuple[FakeCluster, int]
) -> None:
    _, port = cluster
    poller, stopping = CheckpointPoller(), asyncio.Event()

    async def endpoints() -> list[tuple[str, int]]:
        return [("127.0.0.1", port)]

    cfg = sql_config(tmp_path, password="not-it")

    async def wait(w: Waiter) -> str:
        with pytest.raises(SQLUnavailable) as failed:
            await poller.wait(1, cfg, endpoints, w)
        return failed.value.message

    async with asyncio.TaskGroup() as tg:
        tg.create_task(poller.run(stopping))
        messages = await asyncio.gather(
            wait(Waiter(*A, BASE_SCN, 10, Lines())), wait(Waiter(*B, BASE_SCN, 10, Lines()))
        )
        stopping.set()
    assert all("Access denied" in m and "not-it" not in m for m in messages)


async def test_a_wait_announced_but_late_finds_the_session_still_open(
    tmp_path: Path, cluster: tuple[FakeCluster, int]
) -> None:
    """Waits begin one after the other (each after its probe): the session stays for the announced ones,
    rather than closing and opening again between them."""
    fc, port = cluster
    fc.freeze([A, B])  # due in 0.3 s
    poller, stopping = CheckpointPoller(), asyncio.Event()

    async def endpoints() -> list[tuple[str, int]]:
        return [("127.0.0.1", port)]

    cfg, both = sql_config(tmp_path), frozenset({"127.0.0.1:2882", "127.0.0.2:2882"})
    async with asyncio.TaskGroup() as tg:
        tg.create_task(poller.run(stopping))
        await asyncio.sleep(0)  # the poller runs
        await poller.wait(1, cfg, endpoints, Waiter(*A, BASE_SCN, 10, Lines(), both))
        await asyncio.sleep(0.2)  # the other's probe ends a moment later
        late = Lines()
        await poller.wait(1, cfg, endpoints, Waiter(*B, BASE_SCN, 10, late, both))
        stopping.set()
    assert any("advanced" in x for x in late.lines)
    assert len(fc.connections()) == 1
