"""Partial stops, agentless, against fake observers that answer OceanBase SQL: one zone or one server
stopped and started while the rest serves, only when every log stream keeps its majority."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from obstop.fakes.cluster import FakeCluster
from tests.support.controller import ADMIN, Env, basic, running
from tests.support.fakes import Fakes
from tests.support.lifecycle import post, starts, task, wait_for
from tests.support.processes import alive, kill_tree_under, wait_dead
from tests.support.sqlcluster import PASSWORD, config, start_zones

WATCH = {"probe_interval": 0.1, "report_interval": 0.5}
ZONE = "/api/v2/ob/clusters/1/zones"
SERVER = "/api/v2/ob/clusters/1/servers"


@pytest.fixture
def cluster_dir(tmp_path: Path) -> Iterator[Path]:
    FakeCluster.create(tmp_path / "cluster", password=PASSWORD, freeze_delay=0.3)
    yield tmp_path / "cluster"


async def run_task(env: Env, path: str, body: dict[str, Any] | None = None) -> int:
    r = await env.client.post(path, headers=ADMIN, json=body)
    assert r.status_code == 200, r.text
    return int(r.json()["data"]["id"])


async def shown(env: Env) -> tuple[str, dict[str, str], dict[int, str]]:
    """(cluster status, zone -> status, server id -> status) as the API shows them."""
    c = await env.get("/api/v2/ob/clusters/1")
    zones = {z["name"]: z["status"] for z in c["zones"]}
    return c["status"], zones, {s["id"]: s["status"] for z in c["zones"] for s in z["servers"]}


async def settles_on(env: Env, wanted: tuple[str, dict[str, str], dict[int, str]], what: str) -> None:
    """The API shows `wanted`, and still does after the reconciler has taken three more reports."""

    async def there() -> bool:
        return await shown(env) == wanted

    await wait_for(there, f"{what}: {await shown(env)} is not {wanted}", timeout=20)
    for _ in range(3):
        await asyncio.wait_for(env.parts.reconciler.applied.wait(), 10)
    assert await shown(env) == wanted, what


def sql_of(cluster_dir: Path) -> list[str]:
    return [s.sql for s in FakeCluster(cluster_dir).statements()]


def signalled(cluster_dir: Path) -> set[str]:
    """The SQL addresses of the fake observers that received SIGTERM."""
    return {s.server for s in FakeCluster(cluster_dir).statements() if s.sql == "SIGNAL SIGTERM"}


def every_stream_leads(fc: FakeCluster, away_from: set[str]) -> bool:
    """Every log stream has a leader (a majority in sync), none on `away_from`."""
    rows = fc.log_stat()
    streams = {(r.tenant_id, r.ls_id) for r in rows}
    leaders = {(r.tenant_id, r.ls_id): f"{r.svr_ip}:{r.svr_port}" for r in rows if r.role == "LEADER"}
    return (
        bool(streams)
        and set(leaders) == streams
        and not set(leaders.values()) & away_from
        and {r.in_sync for r in rows} == {"YES"}
    )


async def test_stop_a_zone_of_three_then_start_it_again(
    tmp_path: Path, fakes: Fakes, cluster_dir: Path, store_url: str
) -> None:
    cluster = start_zones(fakes, cluster_dir, zones=3, per_zone=1)
    fc = FakeCluster(cluster_dir)
    zone1 = f"{cluster.fakes[0].ip}:2882"
    async with running(config(tmp_path, cluster, store={"url": store_url}, watch=WATCH)) as env:
        task_id = await run_task(env, f"{ZONE}/zone1/stop")
        # the zone's task holds its cluster until it ends
        r = await env.stop()
        assert r.status_code == 409 and r.json()["error"]["code"] == 50002, r.text
        assert f"held by task {task_id} (Stop OB zone" in r.json()["error"]["message"]
        assert await env.wait(task_id) == "SUCCESSFUL"

        t = await task(env, task_id)
        assert t["name"] == "Stop OB zone" and "partial=STOP_ZONE" in t["context"]
        assert "target_cluster_status=RUNNING" in t["context"]
        assert [s["name"] for s in t["tasks"][:3]] == [
            "Prepare stop OB zone",
            "Stop OB zone service",
            "Prepare stop observer",
        ]
        # only zone1's observer went; the others were not touched (the same processes run)
        assert not alive(cluster.pids[0])
        assert [f.pid() for f in cluster.fakes[1:]] == cluster.pids[1:] and all(map(alive, cluster.pids[1:]))
        assert signalled(cluster_dir) == {f"{cluster.fakes[0].ip}:2881"}
        # the majority was checked first, then the freeze and STOP ZONE, and only then the signal
        sql = sql_of(cluster_dir)
        check = sql.index(next(s for s in sql if "GV$OB_LOG_STAT" in s))
        freeze = sql.index(next(s for s in sql if "MINOR FREEZE" in s))
        stop = sql.index("ALTER SYSTEM STOP ZONE 'zone1'")
        assert check < freeze < stop < sql.index("SIGNAL SIGTERM")
        assert zone1 in sql[freeze] and cluster.fakes[1].ip not in sql[freeze]
        log = await env.log_of(task_id, "Prepare stop OB zone")
        assert "majority check: 6 log stream(s) have a replica on zone zone1" in log
        # the tenants keep a majority: every log stream has a leader, elsewhere
        assert every_stream_leads(fc, {zone1})
        assert dict(fc.zones())["zone1"] == "INACTIVE"
        # OCP's statuses while a zone is down: the cluster RUNNING, the zone STOPPED, and so they stay
        await settles_on(
            env,
            (
                "RUNNING",
                {"zone1": "STOPPED", "zone2": "RUNNING", "zone3": "RUNNING"},
                {100: "PROCESS_STOPPED", 101: "RUNNING", 102: "RUNNING"},
            ),
            "after the zone stop",
        )

        start_id = await run_task(env, f"{ZONE}/zone1/start")
        assert await env.wait(start_id) == "SUCCESSFUL"
        assert (await task(env, start_id))["name"] == "Start OB zone"
        pid = cluster.fakes[0].pid()
        assert pid is not None and pid != cluster.pids[0] and alive(pid)
        assert [starts(f.home) for f in cluster.fakes] == [2, 1, 1]
        assert sql_of(cluster_dir)[-1] != "ALTER SYSTEM STOP ZONE 'zone1'"
        assert "ALTER SYSTEM START ZONE 'zone1'" in sql_of(cluster_dir)
        assert dict(fc.zones())["zone1"] == "ACTIVE" and every_stream_leads(fc, set())
        everything = {z: "RUNNING" for z in ("zone1", "zone2", "zone3")}
        await settles_on(env, ("RUNNING", everything, dict.fromkeys((100, 101, 102), "RUNNING")), "started")


@pytest.mark.parametrize(
    ("what", "force"),
    [("zone", False), ("zone", True), ("server", True)],
    ids=["zone", "zone-force", "server-force"],
)
async def test_a_second_zone_would_lose_the_majority_and_nothing_is_touched(
    tmp_path: Path, fakes: Fakes, cluster_dir: Path, what: str, force: bool
) -> None:
    cluster = start_zones(fakes, cluster_dir, zones=3, per_zone=1)
    async with running(config(tmp_path, cluster, watch=WATCH)) as env:
        assert await env.wait(await run_task(env, f"{ZONE}/zone1/stop")) == "SUCCESSFUL"
        before = len(sql_of(cluster_dir))

        path = f"{ZONE}/zone2/stop" if what == "zone" else f"{SERVER}/101/stop"
        refused = await run_task(env, path, {"force": force})
        assert await env.wait(refused) == "FAILED"
        t = await task(env, refused)
        first = "Prepare stop OB zone" if what == "zone" else "Prepare stop OB server"
        assert [s["name"] for s in t["tasks"] if s["status"] == "FAILED"] == [first]
        assert {s["status"] for s in t["tasks"] if s["name"] != first} == {"PENDING"}
        log = await env.log_of(refused, first)
        target = "zone zone2" if what == "zone" else f"server {cluster.fakes[1].ip}:2882"
        assert f"stopping {target} would lose the majority of 6 log stream(s)" in log
        assert "tenant sys (1) log stream 1 would keep 1 of 3 replicas in sync" in log
        assert "tenant mysql_app (1002) log stream 1001" in log and "nothing was touched" in log
        assert ("force does not skip this check" in log) is force
        # nothing was touched: zone2's observer runs as before; no freeze, no STOP, no signal
        assert alive(cluster.pids[1]) and cluster.fakes[1].pid() == cluster.pids[1]
        after = sql_of(cluster_dir)[before:]
        assert [s for s in after if not s.startswith(("SELECT", "SET"))] == []
        assert signalled(cluster_dir) == {f"{cluster.fakes[0].ip}:2881"}
        await settles_on(
            env,
            (
                "RUNNING",
                {"zone1": "STOPPED", "zone2": "RUNNING", "zone3": "RUNNING"},
                {100: "PROCESS_STOPPED", 101: "RUNNING", 102: "RUNNING"},
            ),
            "after the refusal",
        )
        if what == "zone" and not force:
            # a way forward: once zone1 serves again, the refused stop is retried through
            assert await env.wait(await run_task(env, f"{ZONE}/zone1/start")) == "SUCCESSFUL"
            await post(env, f"/api/v2/tasks/instances/{refused}/retry")
            assert await env.wait(refused) == "SUCCESSFUL"
            assert not alive(cluster.pids[1]) and alive(cluster.pids[2])
            assert "run 2 (RETRY)" in await env.log_of(refused, first)


async def test_stop_and_start_one_server(tmp_path: Path, fakes: Fakes, cluster_dir: Path) -> None:
    cluster = start_zones(fakes, cluster_dir, zones=3, per_zone=2)
    fc = FakeCluster(cluster_dir)
    key = f"{cluster.fakes[1].ip}:2882"  # server 101, the second of zone1
    async with running(config(tmp_path, cluster, watch=WATCH)) as env:
        task_id = await run_task(env, f"{SERVER}/101/stop", {"freezeServer": True})
        assert await env.wait(task_id) == "SUCCESSFUL"
        t = await task(env, task_id)
        assert t["name"] == "Stop OB server" and "server_id=101" in t["context"]
        assert [s["name"] for s in t["tasks"]] == [
            "Prepare stop OB server",
            "Stop OB server service",
            "Prepare stop observer",
            "Stop observer process",
            "Update observer status",
            "Update zone status",
            "Update OB cluster status",
        ]
        assert [alive(p) for p in cluster.pids] == [True, False, True, True, True, True]
        sql = sql_of(cluster_dir)
        (freeze,) = [s for s in sql if "MINOR FREEZE" in s]
        assert freeze == f"ALTER SYSTEM MINOR FREEZE SERVER = ('{key}')"
        assert f"ALTER SYSTEM STOP SERVER '{key}'" in sql
        assert "advanced" in await env.log_of(task_id, "Prepare stop observer")
        assert every_stream_leads(fc, {key})
        statuses = dict.fromkeys(range(100, 106), "RUNNING") | {101: "PROCESS_STOPPED"}
        zones = {z: "RUNNING" for z in ("zone1", "zone2", "zone3")}
        await settles_on(env, ("RUNNING", zones, statuses), "one server stopped")

        start_id = await run_task(env, f"{SERVER}/101/start")
        assert await env.wait(start_id) == "SUCCESSFUL"
        t = await task(env, start_id)
        assert t["name"] == "Start OB server" and t["tasks"][0]["name"] == "Start observer process"
        assert alive(cluster.fakes[1].pid() or 0) and [starts(f.home) for f in cluster.fakes][1] == 2
        assert f"ALTER SYSTEM START SERVER '{key}'" in sql_of(cluster_dir)
        assert {s.key: s.stop_time for s in fc.servers()}[key] == 0
        await settles_on(env, ("RUNNING", zones, dict.fromkeys(range(100, 106), "RUNNING")), "started")


async def test_stop_server_that_times_out_fails_clearly_and_rolls_back_starting_nothing(
    tmp_path: Path, fakes: Fakes, cluster_dir: Path
) -> None:
    cluster = start_zones(fakes, cluster_dir, zones=3, per_zone=1)
    fc = FakeCluster(cluster_dir)
    fc.configure(stop_server_delay=30)  # leaders that never finish moving away
    key = f"{cluster.fakes[0].ip}:2882"
    async with running(config(tmp_path, cluster, sql={"service_timeout": 1}, watch=WATCH)) as env:
        task_id = await run_task(env, f"{SERVER}/100/stop")
        assert await env.wait(task_id) == "FAILED"
        t = await task(env, task_id)
        assert [s["name"] for s in t["tasks"] if s["status"] == "FAILED"] == ["Stop OB server service"]
        log = await env.log_of(task_id, "Stop OB server service")
        assert f"server {key} not stopped in the cluster: ALTER SYSTEM STOP SERVER '{key}' failed" in log
        assert "error 4012: Timeout" in log and "no process was touched" in log
        assert all(map(alive, cluster.pids)) and signalled(cluster_dir) == set()

        await post(env, f"/api/v2/tasks/instances/{task_id}/rollback")
        assert await env.wait(task_id) == "SUCCESSFUL"
        # nothing was stopped, so nothing was started: the same processes, launched once each
        assert [f.pid() for f in cluster.fakes] == cluster.pids and all(map(alive, cluster.pids))
        assert [starts(f.home) for f in cluster.fakes] == [1, 1, 1]
        assert not [s for s in sql_of(cluster_dir) if s.startswith("ALTER SYSTEM START")]
        assert "nothing to undo" in await env.log_of(task_id, "Stop OB server service")
        everything = {z: "RUNNING" for z in ("zone1", "zone2", "zone3")}
        await settles_on(
            env, ("RUNNING", everything, dict.fromkeys((100, 101, 102), "RUNNING")), "rolled back"
        )


async def test_a_zone_down_on_purpose_never_hides_an_observer_that_dies(
    tmp_path: Path, fakes: Fakes, cluster_dir: Path
) -> None:
    cluster = start_zones(fakes, cluster_dir, zones=3, per_zone=1)
    fc = FakeCluster(cluster_dir)
    async with running(config(tmp_path, cluster, watch=WATCH)) as env:
        assert await env.wait(await run_task(env, f"{ZONE}/zone1/stop")) == "SUCCESSFUL"
        os.kill(cluster.pids[1], signal.SIGKILL)  # zone2's observer dies on its own
        wait_dead(cluster.pids[1])
        await settles_on(
            env,
            (
                "UNAVAILABLE",
                {"zone1": "STOPPED", "zone2": "STOPPED", "zone3": "RUNNING"},
                {100: "PROCESS_STOPPED", 101: "PROCESS_STOPPED", 102: "RUNNING"},
            ),
            "a death outside the zone stopped on purpose",
        )
        # what the majority check is for: with two zones of three gone, no log stream can elect a leader
        rows = fc.log_stat()
        assert rows and not [r for r in rows if r.role == "LEADER"] and {r.in_sync for r in rows} == {"NO"}


async def test_what_the_api_refuses(tmp_path: Path, fakes: Fakes, cluster_dir: Path) -> None:
    cluster = start_zones(fakes, cluster_dir, zones=3, per_zone=1)
    async with running(config(tmp_path, cluster, watch=WATCH)) as env:
        cases = [
            (f"{ZONE}/zone9/stop", None, 404, 50004, "has no zone 'zone9'"),
            (f"{SERVER}/999/stop", None, 404, 10002, "has no server 999"),
            (f"{ZONE}/zone'1/stop", None, 400, 10001, "zoneName"),
            (f"{SERVER}/100/stop", {"freezeServr": True}, 400, 10001, "freezeServr"),
            (f"{ZONE}/zone1/stop", {"force": "yes"}, 400, 10001, "force"),
            ("/api/v2/ob/clusters/7/zones/zone1/start", None, 404, 10002, "no cluster with id 7"),
        ]
        for path, body, status, code, says in cases:
            r = await env.client.post(path, headers=ADMIN, json=body)
            error = r.json()["error"]
            assert (r.status_code, error["code"]) == (status, code), (path, r.text)
            assert says in error["message"], (path, error)
        for path in (
            f"{ZONE}/zone1/stop",
            f"{ZONE}/zone1/start",
            f"{SERVER}/100/stop",
            f"{SERVER}/100/start",
        ):
            r = await env.client.post(path, headers=basic("viewer"))
            assert r.status_code == 403 and "CLUSTER_MANAGER" in r.json()["error"]["message"], r.text
        # a partial operation needs the rest of the cluster up: a stopped cluster is started whole
        assert await env.wait(int((await env.stop()).json()["data"]["id"])) == "SUCCESSFUL"
        r = await env.client.post(f"{ZONE}/zone1/start", headers=ADMIN)
        assert r.status_code == 409 and r.json()["error"]["code"] == 50002
        assert (
            "it is STOPPED, and Start OB zone needs it RUNNING or UNAVAILABLE" in r.json()["error"]["message"]
        )


async def test_rolling_back_a_zone_stop_starts_the_zone_again_in_the_cluster(
    tmp_path: Path, fakes: Fakes, cluster_dir: Path
) -> None:
    """zone1's stop fails at its process (a child keeps its ports); rolled back, its observer starts again
    and START ZONE gives the zone back to the cluster, which STOP ZONE had taken."""
    cluster = start_zones(fakes, cluster_dir, zones=3, per_zone=1, misbehave={0: ["--linger-child", "60"]})
    fc = FakeCluster(cluster_dir)
    async with running(config(tmp_path, cluster, stop={"port_timeout": 0.5}, watch=WATCH)) as env:
        task_id = await run_task(env, f"{ZONE}/zone1/stop")
        assert await env.wait(task_id) == "FAILED"
        t = await task(env, task_id)
        assert [s["name"] for s in t["tasks"] if s["status"] == "FAILED"] == ["Stop observer process"]
        assert dict(fc.zones())["zone1"] == "INACTIVE" and not alive(cluster.pids[0])

        kill_tree_under(cluster.fakes[0].home)  # the cause goes: the lingering child
        await post(env, f"/api/v2/tasks/instances/{task_id}/rollback")
        assert await env.wait(task_id) == "SUCCESSFUL"
        assert [starts(f.home) for f in cluster.fakes] == [2, 1, 1] and alive(cluster.fakes[0].pid() or 0)
        sql = sql_of(cluster_dir)
        assert sql.index("ALTER SYSTEM START ZONE 'zone1'") > sql.index("ALTER SYSTEM STOP ZONE 'zone1'")
        assert dict(fc.zones())["zone1"] == "ACTIVE" and every_stream_leads(fc, set())
        assert "(its status before this task)" in await env.log_of(task_id, "Prepare stop OB zone")
        everything = {z: "RUNNING" for z in ("zone1", "zone2", "zone3")}
        await settles_on(
            env, ("RUNNING", everything, dict.fromkeys((100, 101, 102), "RUNNING")), "rolled back"
        )
