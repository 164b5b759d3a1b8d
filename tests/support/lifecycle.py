"""Helpers of the lifecycle tests (rollback, skip, cancel, start, statuses that follow reality)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from tests.support.controller import ADMIN, Env

TERMINAL = ("SUCCESSFUL", "FAILED")


async def wait_for(cond: Callable[[], Awaitable[bool]], what: str, timeout: float = 30) -> None:
    # another process's state (or the controller's view of it): polled, bounded, never blocking the loop
    deadline = time.monotonic() + timeout
    while not await cond():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.05)


def starts(home: Path) -> int:
    """How many times an observer was launched in home (each launch logs this line once)."""
    log = home / "log" / "observer.log"
    return log.read_text().count("observer starting in") if log.exists() else 0


def persist_args(home: Path, *extra: str) -> None:
    """Change what the observer restarts with (its persisted configuration), as an operator would."""
    config = home / "etc" / "observer.config.bin"
    config.write_text(json.dumps([*json.loads(config.read_text()), *extra]))


async def statuses(env: Env, cluster_id: int = 1) -> tuple[str, set[str], dict[int, str]]:
    """(cluster status, zone statuses, server id -> status) as the API shows them."""
    c = await env.get(f"/api/v2/ob/clusters/{cluster_id}")
    servers = {s["id"]: s["status"] for z in c["zones"] for s in z["servers"]}
    return c["status"], {z["status"] for z in c["zones"]}, servers


async def post(env: Env, path: str, status: int = 200) -> dict[str, Any]:
    r = await env.client.post(path, headers=ADMIN)
    assert r.status_code == status, r.text
    body: dict[str, Any] = r.json()
    return body


async def task(env: Env, task_id: int) -> dict[str, Any]:
    data: dict[str, Any] = await env.get(f"/api/v2/tasks/instances/{task_id}")
    return data


def subtasks(t: dict[str, Any], name: str) -> list[dict[str, Any]]:
    return [s for s in t["tasks"] if s["name"] == name]


async def until_subtask(
    env: Env, task_id: int, name: str, status: str, timeout: float = 30, server: int | None = None
) -> dict[str, Any]:
    """The first subtask of that name (of that server, if given) to be seen in that status."""
    found: dict[str, Any] = {}
    mine = f"server_id={server}," if server is not None else ""

    async def there() -> bool:
        subs = [
            s
            for s in subtasks(await task(env, task_id), name)
            if s["status"] == status and mine in s["context"]
        ]
        if subs:
            found.update(subs[0])
        return bool(subs)

    await wait_for(there, f"no {name} {status} in task {task_id}", timeout)
    return found
