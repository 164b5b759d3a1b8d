"""The controller end to end in one process: API -> DAG -> engine -> agentless executors -> fake observers.
Every test runs on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
import subprocess
from collections import Counter
from itertools import pairwise
from pathlib import Path
from typing import Any

from tests.support.controller import ADMIN, running, write_config
from tests.support.fakes import Fakes, start_cluster
from tests.support.processes import alive, kill_tree_under


def by_name(task: dict[str, Any]) -> dict[int, str]:
    return {s["id"]: s["name"] for s in task["tasks"]}


async def test_seed_dag_for_one_zone_one_server(tmp_path: Path, fakes: Fakes, store_url: str) -> None:
    cluster = start_cluster(fakes, zones=1, per_zone=1)
    async with running(write_config(tmp_path, cluster, store_url)) as env:
        r = await env.stop()
        assert r.status_code == 200
        body = r.json()
        assert body["successful"] is True and body["status"] == 200
        assert set(body) >= {"data", "successful", "timestamp", "duration", "status", "traceId", "server"}
        task = body["data"]
        assert task["name"] == "Stop OB cluster" and task["status"] == "RUNNING"
        assert task["cluster"] == {"id": 1, "name": "obcluster", "obClusterId": 22}
        assert task["creator"]["name"] == "admin"
        assert task["context"] == (
            "Context(parallelIdx=-1, stringMap={cluster_name=obcluster, cluster_id=1, former_cluster_status=RUNNING, prohibit_rollback=false, "
            "freeze=true, freeze_timeout_seconds=600, force=false}, listMap={server_ids=[100], zone_names=[zone1]})"
        )
        names = by_name(task)
        # follow the single chain from the root, as the seed shows it
        chain, node = [], next(s for s in task["tasks"] if not s["upstreams"])
        while True:
            chain.append(node["name"])
            assert node["description"] == node["name"] and node["operation"] == "EXECUTE"
            assert {"parallelIdx", "runTime", "timeout", "startTime", "finishTime", "context"} <= set(node)
            if not node["downstreams"]:
                break
            (nxt,) = node["downstreams"]
            node = next(s for s in task["tasks"] if s["id"] == nxt)
            assert names[node["upstreams"][0]] == chain[-1]
        assert chain == [
            "Prepare stop cluster",
            "Prepare stop OB zone",
            "Wait node",
            "Prepare stop observer",
            "Wait node",
            "Stop observer process",
            "Wait node",
            "Update observer status",
            "Wait node",
            "Update zone status",
            "Update OB cluster status",
        ]
        assert len(task["tasks"]) == 11
        await env.wait(task["id"])


async def test_fan_out_for_three_zones_of_two_servers(tmp_path: Path, fakes: Fakes, store_url: str) -> None:
    cluster = start_cluster(fakes, zones=3, per_zone=2)
    async with running(write_config(tmp_path, cluster, store_url)) as env:
        task = (await env.stop()).json()["data"]
        counts = Counter(s["name"] for s in task["tasks"])
        assert counts == {
            "Prepare stop cluster": 1,
            "Prepare stop OB zone": 3,
            "Wait node": 4,
            "Prepare stop observer": 6,
            "Stop observer process": 6,
            "Update observer status": 6,
            "Update zone status": 3,
            "Update OB cluster status": 1,
        }
        names = by_name(task)
        for s in task["tasks"]:
            ups = sorted(names[u] for u in s["upstreams"])
            match s["name"]:
                case "Prepare stop OB zone":
                    assert ups == ["Prepare stop cluster"]
                case "Prepare stop observer" | "Stop observer process" | "Update observer status":
                    assert ups == ["Wait node"]
                case "Update zone status":
                    assert ups == ["Wait node"] and len(s["downstreams"]) == 1
                case "Update OB cluster status":
                    assert ups == ["Update zone status"] * 3
                case "Wait node":
                    assert len(set(ups)) == 1 and len(ups) in (3, 6)
        stops = [s for s in task["tasks"] if s["name"] == "Stop observer process"]
        assert sorted(s["parallelIdx"] for s in stops) == list(range(6))
        assert await env.wait(task["id"]) == "SUCCESSFUL"
        # the list shows each subtask in brief, as the detail does, in order (the store writes that JSON)
        listed = (await env.get("/api/v2/tasks/instances?clusterId=1"))["contents"][0]
        detail = await env.get(f"/api/v2/tasks/instances/{task['id']}")
        brief = ("id", "name", "description", "status", "operation")
        assert listed["subtasks"] == [{k: s[k] for k in brief} for s in detail["tasks"]]
        assert {s["status"] for s in listed["subtasks"]} == {"SUCCESSFUL"}


async def test_full_stop_ends_successful_with_everything_stopped(
    tmp_path: Path, fakes: Fakes, store_url: str
) -> None:
    cluster = start_cluster(fakes, zones=3, per_zone=2)
    async with running(write_config(tmp_path, cluster, store_url)) as env:
        task_id = (await env.stop()).json()["data"]["id"]

        assert await env.wait(task_id) == "SUCCESSFUL"

        assert not any(alive(p) for p in cluster.pids)
        assert not any(f.pid_file.exists() for f in cluster.fakes)
        c = await env.get("/api/v2/ob/clusters/1")
        assert c["status"] == "STOPPED"
        assert {z["status"] for z in c["zones"]} == {"STOPPED"}
        assert {s["status"] for z in c["zones"] for s in z["servers"]} == {"PROCESS_STOPPED"}
        task = await env.get(f"/api/v2/tasks/instances/{task_id}")
        assert task["status"] == "SUCCESSFUL" and task["finishTime"]
        assert {s["status"] for s in task["tasks"]} == {"SUCCESSFUL"}
        assert {s["runTime"] for s in task["tasks"]} == {1}
        # every transition left an event row: the task's history reads back
        history = [(e.entity, e.from_status, e.to_status) for e in await env.store.tasks.history(task_id)]
        assert history.count(("subtask", "RUNNING", "SUCCESSFUL")) == len(task["tasks"])
        assert ("cluster", "RUNNING", "STOPPING") in history and ("cluster", "STOPPING", "STOPPED") in history
        assert history.count(("server", "PROCESS_STOPPING", "PROCESS_STOPPED")) == 6
        assert history[-1] == ("task", "RUNNING", "SUCCESSFUL")
        log = await env.log_of(task_id, "Stop observer process")
        assert log.count("stopped with SIGTERM") == 6 and "====" in log
        # the cluster is free again, but STOPPED: a second stop is refused
        again = await env.stop()
        assert again.status_code == 409 and "STOPPED" in again.json()["error"]["message"]


async def test_failed_stop_is_retried_after_the_cause_is_removed(
    tmp_path: Path, fakes: Fakes, store_url: str
) -> None:
    cluster = start_cluster(fakes, zones=2, per_zone=1)
    bad = cluster.fakes[1]
    # the cause: server 2's pid file names a process that is not its observer
    bystander = subprocess.Popen(["sleep", "300"])
    real_pid = cluster.pids[1]
    bad.pid_file.write_text(f"{bystander.pid}\n")
    try:
        async with running(write_config(tmp_path, cluster, store_url)) as env:
            task_id = (await env.stop()).json()["data"]["id"]
            assert await env.wait(task_id) == "FAILED"
            task = await env.get(f"/api/v2/tasks/instances/{task_id}")
            failed = [s for s in task["tasks"] if s["status"] == "FAILED"]
            assert [s["name"] for s in failed] == ["Prepare stop observer"]
            log = await env.log_of(task_id, "Prepare stop observer")
            assert "is not the observer" in log and str(bystander.pid) in log
            assert alive(bystander.pid) and alive(real_pid)
            before = {s["id"]: s for s in task["tasks"] if s["status"] == "SUCCESSFUL"}

            bad.pid_file.write_text(f"{real_pid}\n")  # the operator fixes the pid file
            r = await env.client.post(f"/api/v2/tasks/instances/{task_id}/retry", headers=ADMIN)
            assert r.status_code == 200 and r.json()["data"]["status"] == "RUNNING"
            assert await env.wait(task_id) == "SUCCESSFUL"

            task = await env.get(f"/api/v2/tasks/instances/{task_id}")
            retried = next(s for s in task["tasks"] if s["id"] == failed[0]["id"])
            assert retried["operation"] == "RETRY" and retried["runTime"] == 2
            for s in task["tasks"]:
                if s["id"] in before:  # successful subtasks were not run again
                    assert s["runTime"] == 1 and s["startTime"] == before[s["id"]]["startTime"]
            assert alive(bystander.pid) and not alive(real_pid)
            tasks_history = [
                (e.from_status, e.to_status)
                for e in await env.store.tasks.history(task_id)
                if e.entity == "task"
            ]
            assert tasks_history == [
                (None, "RUNNING"),
                ("RUNNING", "FAILED"),
                ("FAILED", "RUNNING"),
                ("RUNNING", "SUCCESSFUL"),
            ]
    finally:
        bystander.kill()
        bystander.wait()


async def test_failed_subtask_retry(tmp_path: Path, fakes: Fakes, store_url: str) -> None:
    cluster = start_cluster(fakes, zones=1, per_zone=1, misbehave={0: ["--linger-child", "3"]})
    async with running(write_config(tmp_path, cluster, store_url, stop={"port_timeout": 0.3})) as env:
        task_id = (await env.stop()).json()["data"]["id"]
        assert await env.wait(task_id) == "FAILED"
        task = await env.get(f"/api/v2/tasks/instances/{task_id}")
        (failed,) = [s for s in task["tasks"] if s["status"] == "FAILED"]
        assert failed["name"] == "Stop observer process"
        log = await env.log_of(task_id, "Stop observer process")
        assert "port 2881 still held by pid" in log

        kill_tree_under(cluster.fakes[0].home)  # the cause goes away: the lingering child exits
        r = await env.client.post(
            f"/api/v2/tasks/instances/{task_id}/subtasks/{failed['id']}/retry", headers=ADMIN
        )
        assert r.status_code == 200 and r.json()["data"]["operation"] == "RETRY"
        assert await env.wait(task_id) == "SUCCESSFUL"
        log = await env.log_of(task_id, "Stop observer process")
        assert "already stopped" in log and "run 1 (EXECUTE)" in log and "run 2 (RETRY)" in log


async def test_writer_survives_a_caller_cancelled_while_waiting(tmp_path: Path, fakes: Fakes) -> None:
    """A step cancelled (timeout, drain) while its command record is being committed must not stop the writer."""
    cluster = start_cluster(fakes, zones=1, per_zone=1)
    async with running(write_config(tmp_path, cluster, f"sqlite:///{tmp_path}/c.db")) as env:
        writer = env.parts.engine.writer
        waiting = asyncio.create_task(writer.command_begin("obstop-test-cancelled", 1, "h1", "stop_observer"))
        await asyncio.sleep(0)  # it is queued; now its caller goes away
        waiting.cancel()
        task_id = (await env.stop()).json()["data"]["id"]
        assert await env.wait(task_id) == "SUCCESSFUL"  # the writer (and so the engine) still runs


async def test_a_stage_wider_than_max_concurrency_runs_wave_after_wave(
    tmp_path: Path, fakes: Fakes, store_url: str
) -> None:
    """Four servers, one slot: one subtask runs at a time (PostgreSQL once claimed a whole stage at once),
    and each that ends frees the slot for the next READY one at once. The engine's own poll (every 5 s)
    never has to find them: a stop of 12 one-at-a-time steps that waited for it would take more than 45 s;
    it ends well inside the 30 s allowed (it was stuck between waves of a stage wider than
    max_concurrency, as 5,000 servers are for 1,024 slots)."""
    cluster = start_cluster(fakes, zones=1, per_zone=4)
    config = write_config(tmp_path, cluster, store_url, engine={"max_concurrency": 1, "lease_seconds": 3600})
    async with running(config) as env:
        task = (await env.stop()).json()["data"]
        assert await env.wait(task["id"], timeout=30) == "SUCCESSFUL"
        done = await env.get(f"/api/v2/tasks/instances/{task['id']}")
        assert {s["status"] for s in done["tasks"]} == {"SUCCESSFUL"}
        spans = sorted((s["startTime"], s["finishTime"]) for s in done["tasks"])
        assert all(finished <= started for (_, finished), (started, _) in pairwise(spans)), spans
