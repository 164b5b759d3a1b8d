"""The audit trail: every call that changes something (plan, stop, start, retry, rollback, skip, cancel),
with user, client, time, request, traceId and answer, read back through the API, newest first."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from obstop.fakes.cluster import FakeCluster
from tests.support.controller import ADMIN, Env, basic, running
from tests.support.fakes import Fakes
from tests.support.lifecycle import until_subtask
from tests.support.sqlcluster import PASSWORD, config, start


@pytest.fixture
def cluster_dir(tmp_path: Path) -> Iterator[Path]:
    FakeCluster.create(tmp_path / "cluster", password=PASSWORD, freeze_delay=0.2)
    yield tmp_path / "cluster"


async def call(
    env: Env, path: str, body: Any = None, headers: dict[str, str] | None = None
) -> httpx.Response:
    return await env.client.post(path, json=body, headers=headers or ADMIN)


async def test_every_operation_is_in_the_audit_trail(tmp_path: Path, fakes: Fakes, cluster_dir: Path) -> None:
    cluster = start(fakes, cluster_dir, n=2)
    FakeCluster(cluster_dir).configure(freeze_never=True)  # every stop fails in its freeze wait
    made: list[tuple[str, int, str]] = []  # (path, status, traceId) of each call, in order

    async with running(config(tmp_path, cluster)) as env:

        async def op(
            path: str, body: Any = None, status: int = 200, headers: dict[str, str] | None = None
        ) -> Any:
            r = await call(env, path, body, headers)
            assert r.status_code == status, r.text
            made.append((path, status, r.headers["x-trace-id"]))
            return r.json().get("data")

        base = "/api/v2/ob/clusters/1"
        await op(f"{base}/stop?dryRun=true")
        task_id = (await op(f"{base}/stop", {"freezeTimeoutSeconds": 1}))["id"]
        assert await env.wait(task_id) == "FAILED"
        tasks = f"/api/v2/tasks/instances/{task_id}"
        await op(f"{tasks}/retry")
        running_sub = await until_subtask(env, task_id, "Prepare stop observer", "RUNNING")
        await op(f"{tasks}/subtasks/{running_sub['id']}/cancel")
        assert await env.wait(task_id) == "FAILED"
        failed = [s for s in (await env.get(tasks))["tasks"] if s["status"] == "FAILED"]
        await op(f"{tasks}/subtasks/{failed[0]['id']}/retry")
        assert await env.wait(task_id) == "FAILED"
        await op(f"{tasks}/subtasks/{failed[0]['id']}/skip")
        assert await env.wait(task_id) == "FAILED"  # its sibling is still FAILED
        await op(f"{tasks}/rollback")
        assert await env.wait(task_id) == "SUCCESSFUL"
        await op(f"{base}/start", status=409)  # refused: RUNNING again; a refusal is recorded too
        await op(f"{base}/stop", status=403, headers=basic("viewer"))  # and so is who tried without the role
        # no credentials: refused at the gate, changes nothing, names no one: not recorded
        assert (await env.client.post(f"{base}/stop")).status_code == 401

        trail = await env.get("/api/v2/audit?size=100", headers=basic("viewer"))
        entries = list(reversed(trail["contents"]))  # newest first
        assert trail["page"]["totalElements"] == len(made) == len(entries)
        for (path, status, trace), e in zip(made, entries, strict=True):
            assert f"{e['path']}?{e['query']}".rstrip("?") == path
            assert (e["method"], e["status"], e["traceId"]) == ("POST", status, trace)
            assert e["client"] == "127.0.0.1" and e["time"]
        assert {e["user"] for e in entries} == {"admin", "viewer"}
        assert entries[-1]["user"] == "viewer" and entries[1]["body"] == '{"freezeTimeoutSeconds":1}'
        # paging, and a user's calls alone
        page2 = await env.get("/api/v2/audit?size=3&page=2")
        assert [e["id"] for e in page2["contents"]] == [e["id"] for e in trail["contents"][3:6]]
        mine = await env.get("/api/v2/audit?userName=viewer")
        assert [e["status"] for e in mine["contents"]] == [403]
        # reading it changes nothing: no entry for the GETs above
        assert (await env.get("/api/v2/audit"))["page"]["totalElements"] == len(made)
