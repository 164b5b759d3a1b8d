"""OCP-exact task lists (every documented filter) and error answers (OCP's integer codes and statuses) of
every route that can refuse, each leaving the store as it was; and roles as OCP composes them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from obstop.controller.auth import hash_password
from obstop.controller.store.models import HistoryEvent, Subtask, Task
from tests.support.controller import ADMIN, USERS, Env, basic, running, write_config
from tests.support.fakes import Fakes, start_cluster
from tests.support.lifecycle import until_subtask, wait_for

MANAGER = ("manager", "manager-pw")


@pytest.fixture
async def env(tmp_path: Path, fakes: Fakes) -> AsyncIterator[Env]:
    """A cluster whose first stop failed (server 101's observer ignores SIGTERM, and SIGKILL is far off)."""
    cluster = start_cluster(fakes, zones=2, per_zone=1, misbehave={1: ["--exit-delay", "60"]})
    users = [
        {"name": n, "password_hash": hash_password(pw, iterations=1000), "roles": roles}
        for n, (pw, roles) in {**USERS, MANAGER[0]: (MANAGER[1], ["CLUSTER_MANAGER"])}.items()
    ]
    config = write_config(
        tmp_path,
        cluster,
        f"sqlite:///{tmp_path}/c.db",
        api={"users": users},
        stop={"term_timeout": 60, "kill_timeout": 1},
    )
    async with running(config) as e:
        yield e


def manager() -> dict[str, str]:
    import base64

    return {"Authorization": "Basic " + base64.b64encode(f"{MANAGER[0]}:{MANAGER[1]}".encode()).decode()}


async def snapshot(env: Env) -> tuple[Any, ...]:
    """What a refused call must not change (statuses the observers' reports move, "observed", aside)."""
    async with env.store.db.tx() as s:
        counts = [
            await s.scalar(sa.select(sa.func.count()).select_from(Task)),
            await s.scalar(
                sa.select(sa.func.count())
                .select_from(HistoryEvent)
                .where(sa.or_(HistoryEvent.note.is_(None), HistoryEvent.note != "observed"))
            ),
        ]
        subs = (await s.execute(sa.select(Subtask.id, Subtask.status, Subtask.operation))).all()
        tasks = (await s.execute(sa.select(Task.id, Task.status, Task.operation, Task.holds_cluster))).all()
    return (*counts, sorted(map(tuple, subs)), sorted(map(tuple, tasks)))


def assert_error(r: Any, status: int, code: int, words: str) -> None:
    body = r.json()
    assert r.status_code == status, body
    assert body["successful"] is False and body["status"] == status and body["data"] is None
    assert body["error"]["code"] == code, body["error"]
    assert isinstance(body["error"]["code"], int)
    assert words.lower() in body["error"]["message"].lower(), body["error"]


async def running_stop(env: Env) -> tuple[int, dict[str, Any]]:
    """A stop whose server 101 is waiting for its observer to exit (RUNNING): the task holds the cluster."""
    task_id = (await env.stop(body={"freeze": False})).json()["data"]["id"]
    sub = await until_subtask(env, task_id, "Stop observer process", "RUNNING", server=101)
    await until_subtask(env, task_id, "Stop observer process", "SUCCESSFUL", server=100)  # then all is still
    return task_id, sub


async def test_error_codes_of_every_route_that_refuses(env: Env) -> None:
    task_id, sub = await running_stop(env)
    detail = await env.get(f"/api/v2/tasks/instances/{task_id}")
    pending = next(s for s in detail["tasks"] if s["status"] == "PENDING")
    base = f"/api/v2/tasks/instances/{task_id}"
    cases: list[tuple[str, str, dict[str, str], int, int, str]] = [
        # the task runs: no retry, rollback or skip; a PENDING subtask cannot be cancelled
        ("post", f"{base}/retry", ADMIN, 400, 20003, "only a FAILED task can be retried"),
        ("post", f"{base}/rollback", ADMIN, 400, 20003, "in the RUNNING state"),
        ("post", f"{base}/subtasks/{sub['id']}/skip", ADMIN, 400, 20003, "only a FAILED one can be skipped"),
        ("post", f"{base}/subtasks/{sub['id']}/retry", ADMIN, 400, 20003, "only a FAILED one can be retried"),
        ("post", f"{base}/subtasks/{pending['id']}/cancel", ADMIN, 400, 20003, "only a RUNNING one"),
        # no such task or subtask
        ("post", "/api/v2/tasks/instances/999/rollback", ADMIN, 404, 20000, "no task with id 999"),
        ("post", "/api/v2/tasks/instances/999/retry", ADMIN, 404, 20000, "no task with id 999"),
        ("post", f"{base}/subtasks/999999/skip", ADMIN, 404, 20000, "has no subtask 999999"),
        ("post", f"{base}/subtasks/999999/cancel", ADMIN, 404, 20000, "has no subtask 999999"),
        ("post", f"{base}/subtasks/999999/retry", ADMIN, 404, 20000, "has no subtask"),
        ("get", f"{base}/subtasks/999999/log", ADMIN, 404, 20000, "has no subtask"),
        ("get", "/api/v2/tasks/instances/999", ADMIN, 404, 20000, "no task with id 999"),
        # the cluster is held: no second stop, no start
        ("post", "/api/v2/ob/clusters/1/stop", ADMIN, 409, 50002, f"held by task {task_id}"),
        ("post", "/api/v2/ob/clusters/1/start", ADMIN, 409, 50002, f"held by task {task_id}"),
        ("post", "/api/v2/ob/clusters/99/start", ADMIN, 404, 10002, "no cluster with id 99"),
        # roles: a viewer operates nothing; bad credentials
        ("post", f"{base}/rollback", basic("viewer"), 403, 30014, "TASK_MANAGER"),
        ("post", f"{base}/subtasks/{sub['id']}/cancel", basic("viewer"), 403, 30014, "TASK_MANAGER"),
        ("post", "/api/v2/ob/clusters/1/start", basic("viewer"), 403, 30014, "CLUSTER_MANAGER"),
        ("post", f"{base}/subtasks/{sub['id']}/skip", {}, 401, 30000, "authentication required"),
        ("post", f"{base}/rollback", basic("admin", "nope"), 401, 30004, "wrong password"),
        # bad input: integers past any bound, sizes past OCP's, unknown values, unknown routes
        ("get", "/api/v2/tasks/instances?page=9223372036854775808", ADMIN, 400, 10001, "page"),
        ("get", "/api/v2/tasks/instances?page=0", ADMIN, 400, 10001, "page"),
        ("get", "/api/v2/tasks/instances?clusterId=99999999999999999999", ADMIN, 400, 10001, "clusterId"),
        ("get", "/api/v2/tasks/instances?size=2001", ADMIN, 400, 10001, "size"),
        ("get", "/api/v2/tasks/instances?status=DONE", ADMIN, 400, 10001, "status"),
        ("get", "/api/v2/tasks/instances?sort=secret,asc", ADMIN, 400, 10001, "sort"),
        ("get", "/api/v2/tasks/instances?sort=id,sideways", ADMIN, 400, 10001, "sort"),
        ("get", "/api/v2/tasks/instances?type=WEEKLY", ADMIN, 400, 10001, "type"),
        ("post", "/api/v2/tasks/instances/9223372036854775808/rollback", ADMIN, 400, 10001, "id"),
        ("post", f"{base}/subtasks/abc/cancel", ADMIN, 400, 10001, "sid"),
        ("post", f"{base}/cancel", ADMIN, 400, 10001, "no such route"),
        ("get", f"{base}/rollback", ADMIN, 400, 10001, "method not allowed"),
    ]
    for method, path, headers, status, code, words in cases:
        before = await snapshot(env)
        r = await env.client.request(method.upper(), path, headers=headers)
        assert_error(r, status, code, words)
        assert await snapshot(env) == before, path

    # the task ends FAILED (its observer did not exit in time); then the state rules of a FAILED task
    await env.client.post(f"{base}/subtasks/{sub['id']}/cancel", headers=ADMIN)
    assert await env.wait(task_id) == "FAILED"

    async def settled() -> bool:  # the ended task's cluster follows its observers (100 gone, 101 lingering)
        c = await env.get("/api/v2/ob/clusters/1")
        servers = {x["id"]: x["status"] for z in c["zones"] for x in z["servers"]}
        return servers == {100: "PROCESS_STOPPED", 101: "RUNNING"} and c["status"] == "UNAVAILABLE"

    await wait_for(settled, "the controller never settled on what the observers show")
    async with env.store.db.tx() as s:  # as OCP's context may say: this task must not be rolled back
        t = await s.get(Task, task_id)
        assert t is not None
        t.context = {**t.context, "stringMap": {**t.context["stringMap"], "prohibit_rollback": "true"}}
    before = await snapshot(env)
    assert_error(
        await env.client.post(f"{base}/rollback", headers=ADMIN), 400, 20004, f"Task {task_id} can not"
    )
    r = await env.client.post(f"{base}/subtasks/{sub['id']}/cancel", headers=ADMIN)
    assert_error(r, 400, 20003, "only a RUNNING one")
    assert await snapshot(env) == before
    assert (await env.get(f"/api/v2/tasks/instances/{task_id}"))["prohibitRollback"] is True


async def test_the_role_that_stops_a_cluster_reads_and_operates_its_tasks(env: Env) -> None:
    r = await env.client.post("/api/v2/ob/clusters/1/stop", json={"freeze": False}, headers=manager())
    assert r.status_code == 200
    task_id = r.json()["data"]["id"]
    for path in (f"/api/v2/tasks/instances/{task_id}", "/api/v2/tasks/instances"):
        assert (await env.client.get(path, headers=manager())).status_code == 200
    sub = await until_subtask(env, task_id, "Stop observer process", "RUNNING", server=101)
    r = await env.client.post(
        f"/api/v2/tasks/instances/{task_id}/subtasks/{sub['id']}/cancel", headers=manager()
    )
    assert r.status_code == 200, r.text
    assert await env.wait(task_id) == "FAILED"
    # a viewer still reads but does not operate
    assert (
        await env.client.get(f"/api/v2/tasks/instances/{task_id}", headers=basic("viewer"))
    ).status_code == 200


async def test_task_list_filters(env: Env) -> None:
    first, sub = await running_stop(env)
    await env.client.post(f"/api/v2/tasks/instances/{first}/subtasks/{sub['id']}/cancel", headers=ADMIN)
    assert await env.wait(first) == "FAILED"
    await env.client.post(f"/api/v2/tasks/instances/{first}/rollback", headers=ADMIN)
    assert await env.wait(first) == "SUCCESSFUL"
    second, sub2 = await running_stop(env)  # RUNNING

    async def ids(query: str) -> list[int]:
        data = await env.get(f"/api/v2/tasks/instances{query}")
        return [t["id"] for t in data["contents"]]

    assert await ids("") == [second, first]  # newest first
    assert await ids("?sort=id,asc") == [first, second]
    assert await ids("?sort=startTime,desc") == [second, first]
    assert await ids("?status=SUCCESSFUL&status=RUNNING") == [second, first]  # repeated: any of them
    assert await ids("?status=RUNNING") == [second]
    assert await ids("?status=FAILED") == []
    assert await ids("?name=stop%20ob") == [second, first]  # fuzzy, any case
    assert await ids("?name=NoSuchTask") == []
    assert await ids("?name=%25") == []  # a LIKE wildcard is taken literally
    assert await ids("?clusterName=OBclus") == [second, first]
    assert await ids("?clusterName=other") == []
    assert await ids("?clusterId=1") == [second, first]
    assert await ids("?clusterId=2") == []
    assert await ids("?type=MANUAL") == [second, first]
    assert await ids("?type=SCHEDULED") == []
    page = await env.get("/api/v2/tasks/instances?page=2&size=1&sort=id,asc")
    assert [t["id"] for t in page["contents"]] == [second]
    assert page["page"] == {"number": 2, "size": 1, "totalElements": 2, "totalPages": 2}
    assert (await env.get("/api/v2/tasks/instances?size=2000"))["page"]["size"] == 2000
    item = (await env.get("/api/v2/tasks/instances?status=SUCCESSFUL"))["contents"][0]
    assert {"id", "name", "cluster", "creator", "status", "startTime", "finishTime", "subtasks"} <= set(item)
    assert item["type"] == "MANUAL" and item["operation"] == "ROLLBACK"
    assert len(item["subtasks"]) == 16  # 2 zones of 1 server
    assert set(item["subtasks"][0]) == {"id", "name", "description", "status", "operation"}
    assert {s["status"] for s in item["subtasks"]} == {"PENDING"}
    await env.client.post(f"/api/v2/tasks/instances/{second}/subtasks/{sub2['id']}/cancel", headers=ADMIN)
    assert await env.wait(second) == "FAILED"
