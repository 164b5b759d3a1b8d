"""The plan (dry run) of a partial stop or start: the same checks as the task's first subtask — the
majority check above all — and nothing touched: no task, no status moved, no SQL but SELECTs, no signal."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from obstop.fakes.cluster import FakeCluster
from tests.support.controller import ADMIN, Env, running
from tests.support.fakes import Fakes
from tests.support.processes import alive, wait_dead
from tests.support.sqlcluster import PASSWORD, config, start_zones

ZONE = "/api/v2/ob/clusters/1/zones"
SERVER = "/api/v2/ob/clusters/1/servers"


@pytest.fixture
def cluster_dir(tmp_path: Path) -> Iterator[Path]:
    FakeCluster.create(tmp_path / "cluster", password=PASSWORD, freeze_delay=0.3)
    yield tmp_path / "cluster"


async def planned(env: Env, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    r = await env.client.post(path, headers=ADMIN, json=body, params={"dryRun": "true"})
    assert r.status_code == 200, r.text
    data: dict[str, Any] = r.json()["data"]
    assert data["dryRun"] is True
    return data


async def untouched(env: Env, cluster_dir: Path, pids: list[int]) -> None:
    """No task, every status as it was, the observers as they were, and the cluster only read."""
    assert (await env.get("/api/v2/tasks/instances"))["contents"] == []
    c = await env.get("/api/v2/ob/clusters/1")
    assert c["status"] == "RUNNING" and {z["status"] for z in c["zones"]} == {"RUNNING"}
    assert all(alive(p) for p in pids)
    acting = [
        s.sql
        for s in FakeCluster(cluster_dir).statements()
        if not s.sql.upper().startswith(("SELECT", "SET"))
    ]
    assert acting == [], acting


async def test_a_zone_plan_checks_the_majority_and_touches_nothing(
    tmp_path: Path, fakes: Fakes, cluster_dir: Path
) -> None:
    cluster = start_zones(fakes, cluster_dir, zones=3, per_zone=1)
    async with running(config(tmp_path, cluster)) as env:
        zone1 = await planned(env, f"{ZONE}/zone1/stop")
        assert zone1["operation"] == "Stop OB zone" and zone1["executable"], zone1["blockers"]
        # the zone's server alone, would be stopped; the majority kept without it
        (server,) = zone1["servers"]
        assert server["zone"] == "zone1" and server["action"].startswith("stop pid")
        assert any("majority check:" in n and "without zone zone1" in n for n in zone1["notes"])
        assert [t["name"] for t in zone1["tasks"][:2]] == ["Prepare stop OB zone", "Stop OB zone service"]

        # with zone1's observer dead (the fake's log streams follow which observers live), stopping zone2
        # too would leave every stream 1 of 3 in sync: blocked, the tenant named, even with force
        os.kill(cluster.pids[0], signal.SIGKILL)
        wait_dead(cluster.pids[0])
        zone2 = await planned(env, f"{ZONE}/zone2/stop", {"force": True})
        assert not zone2["executable"]
        refusal = next(b for b in zone2["blockers"] if "would lose the majority" in b)
        assert "stopping zone zone2" in refusal and "tenant sys" in refusal
        assert alive(cluster.pids[1]) and alive(cluster.pids[2])
        assert (await env.get("/api/v2/tasks/instances"))["contents"] == []


async def test_server_plans_stop_and_start_one_server_and_touch_nothing(
    tmp_path: Path, fakes: Fakes, cluster_dir: Path
) -> None:
    cluster = start_zones(fakes, cluster_dir, zones=3, per_zone=1)
    async with running(config(tmp_path, cluster)) as env:
        c = await env.get("/api/v2/ob/clusters/1")
        sid = next(s["id"] for z in c["zones"] if z["name"] == "zone2" for s in z["servers"])
        stop = await planned(env, f"{SERVER}/{sid}/stop", {"freezeServer": False})
        assert stop["operation"] == "Stop OB server" and stop["executable"], stop["blockers"]
        assert [s["id"] for s in stop["servers"]] == [sid]
        assert any("without server" in n for n in stop["notes"])
        start = await planned(env, f"{SERVER}/{sid}/start")
        assert start["operation"] == "Start OB server"
        (server,) = start["servers"]
        assert server["action"].startswith("none: already running")
        zone_start = await planned(env, f"{ZONE}/zone2/start")
        assert zone_start["operation"] == "Start OB zone" and len(zone_start["servers"]) == 1
        await untouched(env, cluster_dir, cluster.pids)
