"""Plans (`?dryRun=true`): the DAG and every check, through real agents on a real broker and a fake cluster
answering SQL; nothing signalled, no status moved, no task left behind, no freeze issued."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import psutil

from obstop.fakes.cluster import FakeCluster
from tests.support.controller import ADMIN, Env, amend_config, running
from tests.support.fleet import Fleets
from tests.support.lifecycle import statuses
from tests.support.processes import alive

WATCH = {"probe_interval": 0.1, "report_interval": 0.5}


async def plan(env: Env, verb: str = "stop", body: dict[str, Any] | None = None) -> dict[str, Any]:
    r = await env.client.post(f"/api/v2/ob/clusters/1/{verb}?dryRun=true", headers=ADMIN, json=body)
    assert r.status_code == 200, r.text
    data: dict[str, Any] = r.json()["data"]
    return data


async def no_tasks(env: Env) -> bool:
    return bool((await env.get("/api/v2/tasks/instances"))["page"]["totalElements"] == 0)


async def test_plan_on_a_healthy_cluster_would_stop_every_server_and_changes_nothing(
    fleets: Fleets,
) -> None:
    fleet = await fleets.up(zones=3, per_zone=1)
    cluster_dir = Path(fleet.dir) / "cluster"
    async with running(amend_config(Path(fleet.dir) / "controller.toml", watch=WATCH)) as env:
        before = await statuses(env)
        found = await plan(env)
        assert found["dryRun"] is True and found["executable"] is True, found["blockers"]
        assert found["operation"] == "Stop OB cluster" and found["blockers"] == []
        servers = {s["host"]: s for s in found["servers"]}
        assert sorted(servers) == ["h1", "h2", "h3"]
        for h in fleet.hosts:
            s = servers[h.host]
            assert s["action"].startswith(f"stop pid {h.observer_pid} with SIGTERM"), s
            assert s["observed"].startswith(f"RUNNING pid {h.observer_pid}") and not s["blocked"]
            assert any("checkpoint_scn" in n for n in s["notes"]), s
        assert any(n.startswith("minor freeze: possible") for n in found["notes"]), found["notes"]
        # the DAG it would run: the stop's, every stage
        names = [t["name"] for t in found["tasks"]]
        assert names[0] == "Prepare stop cluster" and names[-1] == "Update OB cluster status"
        assert names.count("Stop observer process") == 3
        # and nothing happened: no task, no status moved, every observer alive, no freeze issued
        assert await no_tasks(env)
        assert await statuses(env) == before
        assert all(alive(h.observer_pid) for h in fleet.hosts)
        statements = [s.sql for s in FakeCluster(cluster_dir).statements()]
        assert not [s for s in statements if "FREEZE" in s or s.startswith("SIGNAL")], statements
        assert any("checkpoint_scn" in s for s in statements)  # it did read what the freeze waits on

        start = await plan(env, "start")
        assert start["executable"] is False and start["operation"] == "Start OB cluster"
        assert any("is RUNNING, and Start OB cluster needs it" in b for b in start["blockers"])
        assert all(s["action"].startswith("none: already running") for s in start["servers"])
        assert await no_tasks(env)

        # a task holding the cluster is named (a stop whose freeze never completes holds it a while)
        FakeCluster(cluster_dir).configure(freeze_never=True)
        task_id = (await env.stop(body={"freezeTimeoutSeconds": 2})).json()["data"]["id"]
        held = await plan(env)
        assert any(f"held by task {task_id} (Stop OB cluster, RUNNING)" in b for b in held["blockers"])
        assert await env.wait(task_id) == "FAILED"


async def test_plan_names_each_blocker(fleets: Fleets, tmp_path: Path) -> None:
    fleet = await fleets.up(zones=3, per_zone=1)
    h1, h2, h3 = fleet.hosts
    d = Path(fleet.dir)
    bystander = subprocess.Popen(["sleep", "300"], cwd=tmp_path)
    try:
        async with running(amend_config(d / "controller.toml", watch=WATCH)) as env:
            # h1's agent goes offline; h2's pid file names another process; the SQL password is wrong
            psutil.Process(h1.agent_pid).terminate()
            psutil.Process(h1.agent_pid).wait(10)
            (Path(h2.home) / "run" / "observer.pid").write_text(f"{bystander.pid}\n")
            (d / "sys.password").write_text("not-the-password\n")
            found = await plan(env)
            assert found["executable"] is False
            servers = {s["host"]: s for s in found["servers"]}
            (b1,) = servers["h1"]["blockers"]
            assert "agent h1 offline since" in b1, b1
            (b2,) = servers["h2"]["blockers"]
            assert "identity not proved" in b2 and "is not the observer" in b2, b2
            assert servers["h3"]["blockers"] == [] and servers["h3"]["action"].startswith("stop pid")
            sql = [b for b in found["blockers"] if b.startswith("minor freeze impossible")]
            assert sql and "Access denied" in sql[0] and "not-the-password" not in str(found), found
            # every blocker is also in the one list a script reads
            assert any("server 2" in b and "identity" in b for b in found["blockers"])
            assert any("agent h1 offline" in b for b in found["blockers"])
            # force: the SQL is no longer a blocker, it is a note; the others still are
            forced = await plan(env, body={"force": True})
            assert not [b for b in forced["blockers"] if "minor freeze" in b]
            assert any("force: true" in n for n in forced["notes"])
            assert len(forced["blockers"]) == 2
            assert await no_tasks(env)
            assert alive(bystander.pid) and alive(h2.observer_pid) and alive(h3.observer_pid)
    finally:
        bystander.kill()
        bystander.wait()
