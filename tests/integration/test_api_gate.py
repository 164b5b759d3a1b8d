"""The API reads nothing before it knows who asks, refuses what it does not understand on calls that change
something, bounds ids and paging, documents its real error answers, and makes guessing logins useless:
the same cost for unknown users, 429 after a few failures."""

from __future__ import annotations

import statistics
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from obstop.controller.auth import hash_password
from obstop.controller.store.models import Task
from tests.support.controller import ADMIN, Env, basic, running, write_config
from tests.support.fakes import Fakes, start_cluster

BIG = 2**64


@pytest.fixture
async def env(tmp_path: Path, fakes: Fakes) -> AsyncIterator[Env]:
    cluster = start_cluster(fakes, zones=1, per_zone=1)
    async with running(write_config(tmp_path, cluster, f"sqlite:///{tmp_path}/c.db")) as e:
        yield e


async def tasks(env: Env) -> int:
    async with env.store.db.tx() as s:
        return int(await s.scalar(sa.select(sa.func.count()).select_from(Task)) or 0)


def assert_error(r: httpx.Response, status: int, code: int, words: str) -> None:
    body = r.json()
    assert r.status_code == status and body["status"] == status and body["successful"] is False, body
    assert body["error"]["code"] == code, body
    assert words.lower() in body["error"]["message"].lower(), body


@pytest.mark.parametrize(
    ("method", "path", "kw", "words"),
    [
        # a mistyped option is refused, never taken for another (?dryRun=true is the plan)
        ("post", "/api/v2/ob/clusters/1/stop?dryrun=true", {}, "unknown query parameter(s) dryrun"),
        ("post", "/api/v2/ob/clusters/1/stop?force=true", {}, "unknown query parameter(s) force"),
        ("post", "/api/v2/ob/clusters/1/stop", {"json": {"freeze": False, "dryRun": True}}, "dryRun"),
        ("post", "/api/v2/tasks/instances/1/retry", {"json": {"all": True}}, "takes no request body"),
        ("post", f"/api/v2/ob/clusters/{BIG}/stop", {}, "id"),
        ("get", f"/api/v2/ob/clusters/{BIG}", {}, "id"),
        ("get", f"/api/v2/tasks/instances?page={BIG}", {}, "page"),
        ("get", f"/api/v2/tasks/instances?clusterId={BIG}", {}, "clusterId"),
        ("get", f"/api/v2/tasks/instances/1/subtasks/{BIG}/log", {}, "sid"),
    ],
)
async def test_unknown_or_unbounded_input_is_400_and_changes_nothing(
    env: Env, method: str, path: str, kw: dict[str, Any], words: str
) -> None:
    r = await env.client.request(method.upper(), path, headers=ADMIN, **kw)
    assert_error(r, 400, 10001, words)
    assert await tasks(env) == 0
    assert (await env.get("/api/v2/ob/clusters/1"))["status"] == "RUNNING"


async def test_reads_take_unknown_query_parameters_as_ocp_does(env: Env) -> None:
    r = await env.client.get("/api/v2/ob/clusters?sort=name", headers=ADMIN)
    assert r.status_code == 200


async def test_body_over_the_cap_is_413_before_it_is_read(env: Env) -> None:
    body = b'{"freeze": false, "pad": "' + b"x" * (64 * 1024) + b'"}'
    r = await env.client.post(
        "/api/v2/ob/clusters/1/stop", content=body, headers={**ADMIN, "content-type": "application/json"}
    )
    assert_error(r, 413, 10101, "over 65536 bytes")

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted as it arrives
        for _ in range(100):
            yield b"x" * 4096

    r = await env.client.post("/api/v2/ob/clusters/1/stop", content=chunks(), headers=ADMIN)
    assert_error(r, 413, 10101, "over 65536 bytes")
    assert await tasks(env) == 0


async def test_unauthenticated_body_is_never_read(env: Env) -> None:
    read = 0

    async def chunks() -> AsyncIterator[bytes]:
        nonlocal read
        for _ in range(1000):
            read += 1
            yield b"[" * 1024

    r = await env.client.post("/api/v2/ob/clusters/1/stop", content=chunks())
    assert_error(r, 401, 30000, "authentication required")
    assert read <= 1  # ASGI's transport hands the first chunk over with the request, nothing more
    r = await env.client.post("/api/v2/ob/clusters/1/stop", content=b"[" * 10_000_000)
    assert_error(r, 401, 30000, "authentication required")
    assert r.headers["www-authenticate"].startswith("Basic")


async def test_openapi_lists_the_real_error_answers(env: Env) -> None:
    doc = (await env.client.get("/openapi.json")).json()
    assert "ErrorEnvelope" in doc["components"]["schemas"]
    assert "HTTPValidationError" not in doc["components"]["schemas"]
    stop = doc["paths"]["/api/v2/ob/clusters/{id}/stop"]["post"]["responses"]
    assert set(stop) == {"200", "400", "401", "403", "404", "409", "413", "429", "500"}
    assert stop["401"]["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorEnvelope")
    assert "30004" in stop["401"]["description"] and "50002" in stop["409"]["description"]
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            assert "422" not in op["responses"], (method, path)
            assert {"400", "500"} <= set(op["responses"]), (method, path)
    status = doc["paths"]["/api/status"]["get"]["responses"]
    assert "401" not in status  # liveness needs no credentials


def client_from(env: Env, address: str) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=env.parts.app, client=(address, 40000))
    return httpx.AsyncClient(transport=transport, base_url="http://obstop")


async def test_failed_logins_are_limited_per_address_and_per_user(env: Env) -> None:
    async with (
        client_from(env, "10.0.0.1") as ops,
        client_from(env, "10.0.0.2") as guesser,
        client_from(env, "10.0.0.3") as elsewhere,
    ):
        assert (await ops.get("/api/v2/ob/clusters", headers=ADMIN)).status_code == 200
        for i in range(10):
            r = await guesser.get("/api/v2/ob/clusters", headers=basic("admin", f"guess-{i}"))
            assert_error(r, 401, 30004, "wrong password")
        r = await guesser.get("/api/v2/ob/clusters", headers=basic("admin", "admin-pw"))  # even right
        assert_error(r, 429, 30007, "too many failed logins")
        assert 1 <= int(r.headers["retry-after"]) <= 60
        r = await guesser.get("/api/v2/ob/clusters", headers=basic("viewer", "guess"))
        assert_error(r, 429, 30007, "from this address")
        r = await elsewhere.get("/api/v2/ob/clusters", headers=basic("admin", "another-guess"))
        assert_error(r, 429, 30007, "as this user")
        r = await elsewhere.get("/api/v2/ob/clusters", headers=basic("viewer"))
        assert r.status_code == 200  # another user, another address
        # a session that logged in before keeps working, at no cost
        assert (await ops.get("/api/v2/ob/clusters", headers=ADMIN)).status_code == 200


@pytest.fixture
async def costly(tmp_path: Path, fakes: Fakes) -> AsyncIterator[Env]:
    """Users hashed at a real cost (200,000 iterations), and limits out of the way."""
    cluster = start_cluster(fakes, zones=1, per_zone=1)
    users = [{"name": "admin", "password_hash": hash_password("admin-pw", 200_000), "roles": ["TASK_VIEWER"]}]
    config = write_config(
        tmp_path,
        cluster,
        f"sqlite:///{tmp_path}/c.db",
        api={"users": users, "failed_logins_per_address": 1000, "failed_logins_per_user": 1000},
    )
    async with running(config) as e:
        yield e


async def test_unknown_and_known_users_cost_the_same(costly: Env) -> None:
    async def cost(user: str, password: str) -> float:
        started = time.perf_counter()
        r = await costly.client.get("/api/v2/ob/clusters", headers=basic_of(user, password))
        assert r.status_code == 401
        return time.perf_counter() - started

    unknown = [await cost(f"nobody-{i}", "pw") for i in range(5)]
    known = [await cost("admin", f"wrong-{i}") for i in range(5)]
    ratio = statistics.median(unknown) / statistics.median(known)
    assert 1 / 3 < ratio < 3, (unknown, known)


def basic_of(user: str, password: str) -> dict[str, str]:
    import base64

    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}
