"""Start OB cluster, agentless: after a stop, every observer is started from its home as it restarts
itself (no arguments: its persisted configuration), listens and answers SQL, and statuses are RUNNING
again. One that cannot come back fails its subtask clearly; a retry works once the cause is gone."""

from __future__ import annotations

import socket
from collections import Counter
from pathlib import Path

from obstop.fakes.install import relaunch
from tests.support.controller import ADMIN, running, write_config
from tests.support.fakes import Fakes, start_cluster
from tests.support.lifecycle import post, starts, statuses, task, wait_for
from tests.support.processes import alive, wait_port

WATCH = {"probe_interval": 0.1, "report_interval": 0.5}


async def test_stop_then_start(tmp_path: Path, fakes: Fakes) -> None:
    cluster = start_cluster(fakes, zones=2, per_zone=2)
    async with running(write_config(tmp_path, cluster, f"sqlite:///{tmp_path}/c.db", watch=WATCH)) as env:
        refused = await env.client.post("/api/v2/ob/clusters/1/start", headers=ADMIN)
        assert refused.status_code == 409 and refused.json()["error"]["code"] == 50002  # it runs

        stop_id = (await env.stop()).json()["data"]["id"]
        assert await env.wait(stop_id) == "SUCCESSFUL"
        body = await post(env, "/api/v2/ob/clusters/1/start")
        started = body["data"]
        assert started["name"] == "Start OB cluster" and started["status"] == "RUNNING"
        assert "former_cluster_status=STOPPED" in started["context"]
        assert "host_ids=[h1, h2, h3, h4]" in started["context"]
        assert Counter(s["name"] for s in started["tasks"]) == {
            "Prepare start cluster": 1,
            "Prepare start OB zone": 2,
            "Wait node": 3,
            "Start observer process": 4,
            "Update observer status": 4,
            "Update zone status": 2,
            "Update OB cluster status": 1,
        }
        assert await env.wait(started["id"]) == "SUCCESSFUL"

        for f, old in zip(cluster.fakes, cluster.pids, strict=True):
            pid = f.pid()
            assert pid is not None and pid != old and alive(pid)
            wait_port(f.ip, f.sql_port, timeout=1)
            wait_port(f.ip, f.rpc_port, timeout=1)
            assert starts(f.home) == 2
        assert await statuses(env) == ("RUNNING", {"RUNNING"}, dict.fromkeys(range(100, 104), "RUNNING"))
        log = await env.log_of(started["id"], "Start observer process")
        assert log.count("./bin/observer") >= 4 and log.count("answering SQL") == 4
        moves = [(e.entity, e.from_status, e.to_status) for e in await env.store.tasks.history(started["id"])]
        assert ("cluster", "STOPPED", "STARTING") in moves and ("cluster", "STARTING", "RUNNING") in moves
        assert moves.count(("server", "STARTING", "RUNNING")) == 4

        # started: a second start is refused, a stop is allowed again
        again = await env.client.post("/api/v2/ob/clusters/1/start", headers=ADMIN)
        assert again.status_code == 409 and "RUNNING" in again.json()["error"]["message"]
        stop_again = (await env.stop()).json()["data"]["id"]
        assert await env.wait(stop_again) == "SUCCESSFUL"


async def test_an_observer_that_cannot_come_back_fails_clearly_and_retry_works(
    tmp_path: Path, fakes: Fakes
) -> None:
    cluster = start_cluster(fakes, zones=2, per_zone=1)
    async with running(write_config(tmp_path, cluster, f"sqlite:///{tmp_path}/c.db", watch=WATCH)) as env:
        stop_id = (await env.stop()).json()["data"]["id"]
        assert await env.wait(stop_id) == "SUCCESSFUL"
        bad = cluster.fakes[1]
        config = bad.home / "etc" / "observer.config.bin"
        config.rename(config.with_suffix(".away"))  # its persisted configuration is gone

        task_id = (await post(env, "/api/v2/ob/clusters/1/start"))["data"]["id"]
        assert await env.wait(task_id) == "FAILED"
        t = await task(env, task_id)
        (failed,) = [s for s in t["tasks"] if s["status"] == "FAILED"]
        assert failed["name"] == "Start observer process"
        log = await env.log_of(task_id, "Start observer process")
        assert f"did not start: {bad.home}/bin/observer exited with status 1" in log
        assert "no arguments and no readable" in log
        assert alive(cluster.fakes[0].pid() or 0)

        async def settled() -> bool:  # the task ended: the statuses say what the servers really are
            return await statuses(env) == (
                "UNAVAILABLE",
                {"RUNNING", "STOPPED"},
                {100: "RUNNING", 101: "PROCESS_STOPPED"},
            )

        await wait_for(settled, "statuses did not follow the servers after the failed start")

        config.with_suffix(".away").rename(config)  # the operator puts it back
        r = await env.client.post(f"/api/v2/tasks/instances/{task_id}/retry", headers=ADMIN)
        assert r.status_code == 200
        assert await env.wait(task_id) == "SUCCESSFUL"
        assert all(alive(f.pid() or 0) for f in cluster.fakes)
        assert [starts(f.home) for f in cluster.fakes] == [2, 2]
        assert await statuses(env) == ("RUNNING", {"RUNNING"}, {100: "RUNNING", 101: "RUNNING"})


async def test_a_port_taken_by_another_process_is_refused_before_any_launch(
    tmp_path: Path, fakes: Fakes
) -> None:
    cluster = start_cluster(fakes, zones=1, per_zone=1)
    async with running(write_config(tmp_path, cluster, f"sqlite:///{tmp_path}/c.db", watch=WATCH)) as env:
        assert await env.wait((await env.stop()).json()["data"]["id"]) == "SUCCESSFUL"
        f = cluster.fakes[0]
        with socket.socket() as squatter:
            squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            squatter.bind((f.ip, f.sql_port))
            squatter.listen()
            task_id = (await post(env, "/api/v2/ob/clusters/1/start"))["data"]["id"]
            assert await env.wait(task_id) == "FAILED"
        log = await env.log_of(task_id, "Start observer process")
        assert "refused: no pid file" in log and "port(s) [2881] are held" in log
        assert starts(f.home) == 1  # nothing was launched


async def test_rolling_back_a_failed_start_stops_only_what_it_launched(tmp_path: Path, fakes: Fakes) -> None:
    cluster = start_cluster(fakes, zones=3, per_zone=1)
    async with running(write_config(tmp_path, cluster, f"sqlite:///{tmp_path}/c.db", watch=WATCH)) as env:
        assert await env.wait((await env.stop()).json()["data"]["id"]) == "SUCCESSFUL"
        relaunch(cluster.fakes[2].home)  # an operator started this one by hand meanwhile
        bad = cluster.fakes[1].home / "etc" / "observer.config.bin"
        bad.rename(bad.with_suffix(".away"))
        task_id = (await post(env, "/api/v2/ob/clusters/1/start"))["data"]["id"]
        assert await env.wait(task_id) == "FAILED"
        assert alive(cluster.fakes[0].pid() or 0)  # launched by this start

        await post(env, f"/api/v2/tasks/instances/{task_id}/rollback")
        assert await env.wait(task_id) == "SUCCESSFUL"
        assert cluster.fakes[0].pid() is None  # stopped again (its pid file removed)
        assert alive(cluster.fakes[2].pid() or 0)  # not this task's: left running
        assert [starts(f.home) for f in cluster.fakes] == [2, 1, 2]
        log = await env.log_of(task_id, "Start observer process")
        assert "stopped again" in log and "this task did not launch it" in log
        assert await statuses(env) == (
            "UNAVAILABLE",
            {"STOPPED", "RUNNING"},
            {100: "PROCESS_STOPPED", 101: "PROCESS_STOPPED", 102: "RUNNING"},
        )
