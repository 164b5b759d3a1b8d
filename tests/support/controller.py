"""The controller in the test's process: a real store (a SQLite file or a fresh PostgreSQL database), the
real engine and dispatch, the API through httpx's ASGI transport (no network, the same app)."""

from __future__ import annotations

import asyncio
import base64
import tomllib
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import tomli_w

from obstop.agent.tomlconf import merge
from obstop.controller.auth import hash_password
from obstop.controller.config import ControllerConfig, load_config
from obstop.controller.daemon import Parts, build
from obstop.controller.states.task import TaskStatus
from tests.support.fakes import Cluster

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/test"
USERS = {
    "admin": ("admin-pw", ["CLUSTER_MANAGER", "TASK_MANAGER", "TASK_VIEWER"]),
    "viewer": ("viewer-pw", ["TASK_VIEWER"]),
}


def basic(user: str, password: str | None = None) -> dict[str, str]:
    pw = USERS[user][0] if password is None else password
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{pw}".encode()).decode()}


ADMIN = basic("admin")


def api_users() -> list[dict[str, Any]]:
    """USERS as controller.toml's [[api.users]] (a cheap KDF: tests log in often)."""
    return [
        {"name": n, "password_hash": hash_password(pw, iterations=1000), "roles": roles}
        for n, (pw, roles) in USERS.items()
    ]


@asynccontextmanager
async def database(kind: str, tmp: Path) -> AsyncIterator[str]:
    """A store URL: a SQLite file under tmp, or a PostgreSQL database made for this test and dropped."""
    if kind == "sqlite":
        yield f"sqlite:///{tmp}/state/controller.db"
        return
    import asyncpg

    name = f"obstop_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(PG_ADMIN.replace("postgresql://", "postgres://"))
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


def write_config(tmp: Path, cluster: Cluster, store_url: str, **overrides: Any) -> Path:
    servers = [
        {
            "id": 100 + i,
            "zone": f.zone,
            "host": f"h{i + 1}",
            "ip": f.ip,
            "sql_port": f.sql_port,
            "rpc_port": f.rpc_port,
            "home_path": str(f.home),
        }
        for i, f in enumerate(cluster.fakes)
    ]
    (tmp / "inventory.toml").write_text(
        tomli_w.dumps({"clusters": [{"id": 1, "name": "obcluster", "ob_cluster_id": 22, "servers": servers}]})
    )
    config: dict[str, Any] = {
        "inventory": "inventory.toml",
        "api": {
            "listen": "127.0.0.1:0",
            "users": api_users(),
        },
        "store": {"url": store_url},
        "agentless": {"local_hosts": [s["host"] for s in servers]},
        "stop": {"term_timeout": 2.0, "kill_timeout": 5.0, "port_timeout": 5.0, "subtask_timeout": 30},
        "engine": {"controller_id": "ctl-test", "lease_seconds": 10},
    }
    config = merge(config, overrides)
    path = tmp / "controller.toml"
    path.write_text(tomli_w.dumps(config))
    return path


class Env:
    def __init__(self, parts: Parts, client: httpx.AsyncClient) -> None:
        self.parts = parts
        self.client = client

    @property
    def store(self) -> Any:
        return self.parts.store

    async def stop(
        self, cluster_id: int = 1, body: Any = None, headers: dict[str, str] | None = None
    ) -> httpx.Response:
        kw: dict[str, Any] = {"headers": headers or ADMIN}
        if body is not None:
            kw["json"] = body
        return await self.client.post(f"/api/v2/ob/clusters/{cluster_id}/stop", **kw)

    async def get(self, path: str, headers: dict[str, str] | None = None) -> Any:
        r = await self.client.get(path, headers=headers or ADMIN)
        assert r.status_code == 200, r.text
        return r.json()["data"]

    async def wait(self, task_id: int, timeout: float = 60) -> TaskStatus:
        return await self.parts.engine.wait_task(task_id, timeout)

    async def log_of(self, task_id: int, name: str) -> str:
        task = await self.get(f"/api/v2/tasks/instances/{task_id}")
        logs = []
        for sub in task["tasks"]:
            if sub["name"] == name:
                logs.append(
                    (await self.get(f"/api/v2/tasks/instances/{task_id}/subtasks/{sub['id']}/log"))["log"]
                )
        return "\n".join(logs)


def amend_config(path: Path, **overrides: Any) -> Path:
    """Merge overrides into a controller.toml (e.g. one `obstop fakehosts up` wrote), with the test users."""
    data = tomllib.loads(path.read_text())
    data = merge(data, {"api": {"users": api_users()}})
    path.write_text(tomli_w.dumps(merge(data, overrides)))
    return path


@asynccontextmanager
async def running(config_path: Path) -> AsyncIterator[Env]:
    config: ControllerConfig = load_config(config_path)
    parts = await build(config)
    stopping = asyncio.Event()
    runner = asyncio.create_task(parts.run(stopping))
    await parts.engine.started.wait()
    try:
        transport = httpx.ASGITransport(app=parts.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://obstop") as client:
            yield Env(parts, client)
    finally:
        stopping.set()
        await runner
        await parts.close()
