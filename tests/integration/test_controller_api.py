"""Every API error answers OCP's envelope with the right status; a refused POST changes nothing in the store."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from obstop.controller.store import models as m
from obstop.fakes.install import FakeObserver
from tests.support.controller import ADMIN, Env, basic, running, write_config
from tests.support.fakes import Cluster, Fakes, fresh_ip, start_cluster
from tests.support.lifecycle import wait_for


@pytest.fixture
async def env(tmp_path: Path, fakes: Fakes) -> AsyncIterator[Env]:
    """A controller of one cluster whose observer takes 30 s to exit: a stop stays RUNNING meanwhile."""
    cluster = start_cluster(fakes, zones=1, per_zone=1, misbehave={0: ["--exit-delay", "30"]})
    async with running(
        write_config(tmp_path, cluster, f"sqlite:///{tmp_path}/c.db", stop={"term_timeout": 60})
    ) as e:
        yield e


WATCH = {"probe_interval": 0.2, "report_interval": 1}  # quick to see what runs


@pytest.fixture
async def idle(tmp_path: Path) -> AsyncIterator[Env]:
    """A controller of one cluster whose observer is not running: enough for calls that must be refused
    (a stop that got through would still write its task)."""
    cluster = Cluster()
    cluster.add(FakeObserver(tmp_path / "ob", fresh_ip()), 0, "zone1")
    async with running(write_config(tmp_path, cluster, f"sqlite:///{tmp_path}/c.db", watch=WATCH)) as e:

        async def settled() -> bool:  # statuses follow the observers: its home has none, so not RUNNING
            return bool((await e.get("/api/v2/ob/clusters/1"))["status"] != "RUNNING")

        await wait_for(settled, "the controller never saw that no observer runs")
        yield e


async def snapshot(env: Env) -> tuple[object, ...]:
    """What a stop or a retry would change: rows of tasks, subtasks, history, commands; every status."""
    async with env.store.db.tx() as s:
        counts = [
            await s.scalar(sa.select(sa.func.count()).select_from(t))
            for t in (m.Task, m.Subtask, m.HistoryEvent, m.CommandRecord)
        ]
        statuses = [
            sorted((await s.execute(sa.select(t.status))).scalars())
            for t in (m.Cluster, m.Zone, m.Server, m.Subtask)
        ]
        return (*counts, *statuses)


def assert_error(r: Any, status: int, words: str) -> None:
    body = r.json()
    assert r.status_code == status, body
    assert body["successful"] is False and body["status"] == status and body["data"] is None
    assert body["traceId"] and body["timestamp"] and "duration" in body and "server" in body
    assert words.lower() in body["error"]["message"].lower(), body["error"]
    assert body["error"]["code"]


@pytest.mark.parametrize(
    ("method", "path", "kw", "status", "words"),
    [
        ("post", "/api/v2/ob/clusters/1/stop", {"headers": {}}, 401, "authentication required"),
        ("post", "/api/v2/ob/clusters/1/stop", {"headers": basic("admin", "wrong")}, 401, "wrong password"),
        ("post", "/api/v2/ob/clusters/1/stop", {"headers": {"Authorization": "Basic !!!"}}, 401, "malformed"),
        ("get", "/api/v2/tasks/instances", {"headers": {}}, 401, "authentication"),
        ("post", "/api/v2/ob/clusters/1/stop", {"headers": basic("viewer")}, 403, "CLUSTER_MANAGER"),
        ("post", "/api/v2/tasks/instances/1/retry", {"headers": basic("viewer")}, 403, "TASK_MANAGER"),
        ("post", "/api/v2/ob/clusters/99/stop", {}, 404, "no cluster with id 99"),
        ("get", "/api/v2/ob/clusters/99", {}, 404, "no cluster"),
        ("get", "/api/v2/tasks/instances/99", {}, 404, "no task with id 99"),
        ("get", "/api/v2/tasks/instances/99/subtasks/1/log", {}, 404, "no subtask"),
        ("post", "/api/v2/tasks/instances/99/retry", {}, 404, "no task"),
        ("get", "/api/v2/nothing/here", {}, 400, "no such route"),
        ("post", "/api/v2/ob/clusters/abc/stop", {}, 400, "id"),
        ("post", "/api/v2/ob/clusters/0/stop", {}, 400, "id"),
        ("post", "/api/v2/ob/clusters/1/stop", {"json": {"bogus": 1}}, 400, "bogus"),
        ("post", "/api/v2/ob/clusters/1/stop", {"json": {"freeze": "maybe"}}, 400, "freeze"),
        (
            "post",
            "/api/v2/ob/clusters/1/stop",
            {"json": {"freezeTimeoutSeconds": -5}},
            400,
            "freezeTimeoutSeconds",
        ),
        (
            "post",
            "/api/v2/ob/clusters/1/stop",
            {"content": b"{not json", "headers": {**ADMIN, "content-type": "application/json"}},
            400,
            "json",
        ),
        ("get", "/api/v2/tasks/instances?status=NOPE", {}, 400, "status"),
    ],
)
async def test_error_answers_envelope_and_a_refused_post_changes_nothing(
    idle: Env, method: str, path: str, kw: dict[str, Any], status: int, words: str
) -> None:
    before = await snapshot(idle)
    kw = {"headers": ADMIN, **kw}
    r = await idle.client.request(method.upper(), path, **kw)
    assert_error(r, status, words)
    if status == 401:
        assert r.headers["www-authenticate"].startswith("Basic")
    if method == "post":  # a stop or a retry that got through would have written rows or moved a status
        assert await snapshot(idle) == before


async def test_conflicts(env: Env) -> None:
    first = await env.stop()
    assert first.status_code == 200
    task_id = first.json()["data"]["id"]
    before = await snapshot(env)

    held = await env.stop()
    assert_error(held, 409, f"held by task {task_id}")
    assert held.json()["error"]["code"] == 50002
    r = await env.client.post(f"/api/v2/tasks/instances/{task_id}/retry", headers=ADMIN)
    assert_error(r, 400, "only a FAILED task can be retried")
    assert r.json()["error"]["code"] == 20003
    task = await env.get(f"/api/v2/tasks/instances/{task_id}")
    sub = task["tasks"][0]
    r = await env.client.post(f"/api/v2/tasks/instances/{task_id}/subtasks/{sub['id']}/retry", headers=ADMIN)
    assert_error(r, 400, "only a FAILED one")
    assert (await snapshot(env))[:2] == before[:2]  # no new task, no new subtask


async def test_reads(env: Env) -> None:
    clusters = await env.get("/api/v2/ob/clusters", headers=basic("viewer"))
    (c,) = clusters["contents"]
    assert c["id"] == 1 and c["status"] == "RUNNING" and c["zones"][0]["servers"][0]["id"] == 100
    task_id = (await env.stop()).json()["data"]["id"]
    listed = await env.get("/api/v2/tasks/instances?clusterId=1", headers=basic("viewer"))
    assert listed["page"]["totalElements"] == 1 and listed["contents"][0]["id"] == task_id
    assert (await env.get("/api/v2/tasks/instances?status=SUCCESSFUL"))["contents"] == []
    status = await env.client.get("/api/status")
    assert status.status_code == 200 and status.json()["data"]["status"] == "UP"
    metrics = await env.client.get("/metrics")
    assert "obstop_tasks_created_total 1.0" in metrics.text
    docs = await env.client.get("/docs")
    assert docs.status_code == 200
