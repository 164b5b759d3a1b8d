"""Two controller processes on one PostgreSQL database (issue 13): each with its own controller_id and API,
claiming subtasks without overlap. One of them SIGKILLed in the middle of a stop: the other takes its
leases over once they expire (it reclaims expired leases while it runs, not only at its start) and
resumes its subtasks with the same command ids, which the agents answer from their journals: no observer
is signalled twice."""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from obstop.fakes.net import free_port
from tests.support.controller import amend_config, database, write_config
from tests.support.controller_process import ControllerProcess
from tests.support.fakes import Fakes, start_cluster
from tests.support.fleet import Fleets, agent_log, observer_log, wait_for
from tests.support.processes import alive

LEASE = 4  # seconds: a dead controller's subtasks are taken over within this (plus lease/5)
STOP = "Stop observer process"
pytestmark = pytest.mark.postgres


@pytest.fixture
async def pg_url(tmp_path: Path) -> AsyncIterator[str]:
    """A PostgreSQL database of this test's own."""
    async with database("postgres", tmp_path) as url:
        yield url


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[list[ControllerProcess]]:
    """Controller processes (each logging to its own file), none left running after the test."""
    made: list[ControllerProcess] = []
    yield made
    for ctl in made:
        ctl.close()


def two_configs(base: Path, store_url: str) -> list[Path]:
    """Copies of a controller.toml beside it: one store, their own controller_id and API port each."""
    paths = []
    for name in ("a", "b"):
        path = base.with_name(f"controller-{name}.toml")
        shutil.copy(base, path)
        amend_config(
            path,
            store={"url": store_url},
            api={"listen": f"127.0.0.1:{free_port()}"},
            engine={"controller_id": f"ctl-{name}", "lease_seconds": LEASE},
        )
        paths.append(path)
    return paths


async def rows(url: str, query: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(url.replace("postgresql://", "postgres://"))
    try:
        return list(await conn.fetch(query, *args))
    finally:
        await conn.close()


async def claims(url: str, task_id: int) -> dict[int, list[str]]:
    """Each subtask's claims and resumptions, in order (the history's notes: "run 1 by ctl-a", ...)."""
    found: dict[int, list[str]] = {}
    for r in await rows(
        url,
        "SELECT entity_id, note FROM events WHERE task_id = $1 AND entity = 'subtask' "
        "AND (note LIKE 'run % by %' OR note LIKE 'resumed by %') ORDER BY id",
        task_id,
    ):
        found.setdefault(r["entity_id"], []).append(r["note"])
    return found


def assert_claimed_once(history: dict[int, list[str]]) -> None:
    """Every subtask was claimed once for its one run (no two controllers ran it side by side)."""
    for sid, notes in history.items():
        runs = [n for n in notes if n.startswith("run ")]
        assert len(runs) == 1 and runs[0].startswith("run 1 by "), (sid, notes)


async def test_two_controllers_claim_a_stop_without_overlap(
    tmp_path: Path, fakes: Fakes, pg_url: str, pair: list[ControllerProcess]
) -> None:
    """Both running normally, a 2-zone stop called on one and read on the other: every subtask is run
    once, by one of them."""
    cluster = start_cluster(fakes, zones=2, per_zone=2)
    a_cfg, b_cfg = two_configs(write_config(tmp_path, cluster, pg_url), pg_url)
    a = ControllerProcess(a_cfg, tmp_path / "controller-a.log")
    b = ControllerProcess(b_cfg, tmp_path / "controller-b.log")
    pair += [a, b]
    await asyncio.gather(asyncio.to_thread(a.start), asyncio.to_thread(b.start))

    task_id = await asyncio.to_thread(a.stop_cluster)
    assert await asyncio.to_thread(b.finish, task_id) == "SUCCESSFUL"

    assert not any(alive(p) for p in cluster.pids)
    for fake in cluster.fakes:
        assert (fake.home / "log" / "observer.log").read_text().count("received SIGTERM") == 1
    history = await claims(pg_url, task_id)
    assert len(history) == len((await asyncio.to_thread(b.task, task_id))["tasks"])
    assert_claimed_once(history)
    assert not any("resumed by" in n for notes in history.values() for n in notes), history
    assert await asyncio.to_thread(a.stop) == 0
    assert await asyncio.to_thread(b.stop) == 0


async def test_controller_killed_mid_stop_another_takes_over(
    tmp_path: Path, fleets: Fleets, pg_url: str, pair: list[ControllerProcess]
) -> None:
    """The stop is called on A; the controller holding the most "Stop observer process" subtasks is
    SIGKILLed while the observers exit (slowly). The other takes those subtasks over once their lease
    expires and re-sends their commands (same ids, signed anew): each agent answers from its journal,
    and each observer got exactly one SIGTERM."""
    fleet = await fleets.up(
        zones=2, per_zone=2, misbehave={f"h{i}": ["--exit-delay", "1"] for i in range(1, 5)}
    )
    base = amend_config(
        Path(fleet.dir) / "controller.toml", stop={"resend_interval": 0.5, "term_timeout": 10}
    )
    a_cfg, b_cfg = two_configs(base, pg_url)
    a = ControllerProcess(a_cfg, tmp_path / "controller-a.log")
    b = ControllerProcess(b_cfg, tmp_path / "controller-b.log")
    pair += [a, b]
    await asyncio.gather(asyncio.to_thread(a.start), asyncio.to_thread(b.start))
    by_id = {"ctl-a": a, "ctl-b": b}

    task_id = await asyncio.to_thread(a.stop_cluster, 1, {"freeze": False})
    query = "SELECT id, lease_owner FROM subtasks WHERE task_id = $1 AND name = $2 AND status = 'RUNNING'"

    async def stopping() -> bool:
        # every observer got its SIGTERM and is exiting, and some stop subtasks still run
        return all("received SIGTERM" in observer_log(h) for h in fleet.hosts) and bool(
            await rows(pg_url, query, task_id, STOP)
        )

    deadline = time.monotonic() + 30
    while not await stopping():
        assert time.monotonic() < deadline, "the observers were never all being stopped"
        await asyncio.sleep(0.05)
    held = {r["id"]: r["lease_owner"] for r in await rows(pg_url, query, task_id, STOP)}
    victim_id = max(by_id, key=lambda c: sum(o == c for o in held.values()))
    victim, survivor = by_id[victim_id], by_id["ctl-b" if victim_id == "ctl-a" else "ctl-a"]
    await asyncio.to_thread(victim.kill)
    killed = time.monotonic()
    # what the dead controller still held (it may have finished some between the look and the kill)
    held = {r["id"]: r["lease_owner"] for r in await rows(pg_url, query, task_id, STOP)}
    taken = sorted(sid for sid, owner in held.items() if owner == victim_id)
    assert taken, "the killed controller held no stop any more: nothing to take over"

    # the survivor answers the API and finishes the task (with A's leases expiring LEASE s after its
    # last renewal; generous bound for a loaded machine, the takeover time is printed)
    status = await asyncio.to_thread(survivor.finish, task_id, LEASE * 3 + 20)
    print(f"task ended {time.monotonic() - killed:.1f}s after the kill (lease {LEASE}s)")
    assert status == "SUCCESSFUL", survivor.task(task_id)

    history = await claims(pg_url, task_id)
    assert_claimed_once(history)
    resumed = {sid: [n for n in notes if n.startswith("resumed by")] for sid, notes in history.items()}
    for sid in taken:  # each of the victim's stops resumed by the survivor, once
        assert resumed[sid] == [f"resumed by {'ctl-a' if survivor is a else 'ctl-b'}"], history[sid]
    assert not any(resumed[sid] for sid in history if sid not in taken and sid in held), history

    stop_logs = {
        s["id"]: (
            await asyncio.to_thread(
                survivor.http.get, f"/api/v2/tasks/instances/{task_id}/subtasks/{s['id']}/log"
            )
        ).json()["data"]["log"]
        for s in (await asyncio.to_thread(survivor.task, task_id))["tasks"]
        if s["name"] == STOP
    }
    for sid in taken:  # re-sent with its id: answered from the journal (or, if still running, live)
        assert "from its journal" in stop_logs[sid] or "accepted command" in stop_logs[sid], stop_logs[sid]
    for h in fleet.hosts:
        assert observer_log(h).count("received SIGTERM") == 1, observer_log(h)
        assert "rejected command" not in agent_log(fleet, h)
    replays = sum("seen again: answering the recorded result" in agent_log(fleet, h) for h in fleet.hosts)
    print(f"{replays} of {len(taken)} re-sent command(s) answered from the agents' journals")
    await wait_for(lambda: not any(alive(h.observer_pid) for h in fleet.hosts), "an observer is alive")
    assert await asyncio.to_thread(survivor.stop) == 0
