"""The trial's store: SQLite in its directory, a database of its own on the shared PostgreSQL, or a
PostgreSQL instance of its own (the one R5 restarts); and a process holding SQLite's write lock."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import asyncpg

from reliability.procs import OwnPostgres, TrialError

SHARED_PG = "postgres://postgres@127.0.0.1:5432/test"


async def _admin(url: str, sql: str) -> None:
    conn = await asyncpg.connect(url, timeout=10)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@contextmanager
def database(admin_url: str = SHARED_PG) -> Iterator[str]:
    """A fresh database for one trial (dropped after): its postgresql:// URL."""
    name = f"obstop_rel_{secrets.token_hex(5)}"
    try:
        asyncio.run(_admin(admin_url, f'CREATE DATABASE "{name}"'))
    except (OSError, asyncpg.PostgresError) as exc:
        raise TrialError(f"cannot create a database at {admin_url.split('@')[-1]}: {exc}") from exc
    base = admin_url.rsplit("/", 1)[0].replace("postgres://", "postgresql://", 1)
    try:
        yield f"{base}/{name}"
    finally:
        with contextlib.suppress(OSError, asyncpg.PostgresError):
            asyncio.run(_admin(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@contextmanager
def own_postgres() -> Iterator[OwnPostgres]:
    pg = OwnPostgres()
    try:
        yield pg.init()
    finally:
        with contextlib.suppress(TrialError):
            pg.stop("immediate")
        shutil.rmtree(pg.root, ignore_errors=True)


_LOCKER = """
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)
db.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
db.execute("ROLLBACK")
"""


def hold_sqlite_lock(path: Path, seconds: float) -> subprocess.Popen[str]:
    """Another process takes the database's write lock (BEGIN EXCLUSIVE) and holds it; returns once held."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _LOCKER, str(path), str(seconds)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    if proc.stdout.readline().strip() != "locked":
        proc.kill()
        raise TrialError(f"could not lock {path}")
    return proc
