"""The database: SQLite (default) or PostgreSQL through SQLAlchemy's asyncio engine, migrated by Alembic."""

from __future__ import annotations

import contextlib
import secrets
import traceback
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import orjson
import sqlalchemy as sa
from alembic import command as alembic_command
from alembic.config import Config as AlembicConfig
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

from obstop.controller.store.models import Meta

STARTUP_LOCK = 0x0B570B  # the PostgreSQL advisory lock a controller holds while it sets the store up


def async_url(url: str) -> str:
    if url.startswith("sqlite:///"):
        return "sqlite+aiosqlite:///" + url[len("sqlite:///") :]
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url[len(prefix) :]
    return url


def _json_dumps(value: Any) -> str:
    return orjson.dumps(value).decode()  # a DAG of thousands of subtasks: three JSON columns a row


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    # a commit reaches the WAL (the OS's page cache) without an fsync: it survives the controller's crash,
    # not a power loss, which may drop the last commits (the store stays consistent). A step re-run after
    # that sends the same command id (task, subtask, run: steps/run.py), answered from the agent's
    # journal, so nothing runs twice; FULL would add an fsync to every group commit, on every stage.
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def _sqlite_reader_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA query_only=ON")  # a reader never writes, even by mistake
    cur.close()
    # the driver begins no transaction for a SELECT: each statement would see the latest commit, and a
    # task read in two statements could show it RUNNING beside subtasks all ended. SQLAlchemy's recipe:
    # the driver's own transactions off, a BEGIN of ours at the session's begin (one snapshot, in WAL)
    dbapi_conn.isolation_level = None


def _sqlite_reader_begin(conn: Any) -> None:
    conn.exec_driver_sql("BEGIN")


def store_failure(exc: BaseException) -> bool:
    """The store failed, not the code using it: a database error, or a connection to the database refused
    or lost (asyncpg raises those unwrapped). Said in one line, never as a traceback."""
    if isinstance(exc, sa.exc.SQLAlchemyError):
        return True
    return isinstance(exc, ConnectionError) and any(
        "sqlalchemy" in f.filename or "asyncpg" in f.filename for f in traceback.extract_tb(exc.__traceback__)
    )


def store_cause(exc: BaseException) -> str:
    """A store failure in one line: the driver's words, not the SQL."""
    cause = getattr(exc, "orig", None) or exc
    return " ".join(str(cause).split())[:300] or type(cause).__name__


def rows(result: Any) -> int:
    """How many rows an UPDATE or DELETE touched (a compare-and-set that touched none lost)."""
    return int(cast(sa.CursorResult[Any], result).rowcount)


class Database:
    def __init__(self, url: str) -> None:
        self.url = url
        self.id = ""  # the store's own random id, set by open()
        self.command_secret = b""  # keys the unguessable part of command ids, set by open()
        self.is_sqlite = url.startswith("sqlite")
        kwargs: dict[str, Any]
        path = ""
        if self.is_sqlite:
            path = url[len("sqlite:///") :]
            if path and path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            # one connection: SQLite has one writer anyway, and this keeps writers from colliding
            kwargs = {"pool_size": 1, "max_overflow": 0, "connect_args": {"timeout": 30}}
        else:
            # pre-ping: a connection that died with its server (a PostgreSQL restart) or was left mid-
            # operation is replaced at checkout, not handed to the next query (fault trials, R5)
            kwargs = {"pool_size": 10, "max_overflow": 10, "pool_pre_ping": True}
        self.engine = create_async_engine(
            async_url(url), json_serializer=_json_dumps, json_deserializer=orjson.loads, **kwargs
        )
        if self.is_sqlite:
            sa.event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        # what the API reads (a polled list of thousands of subtasks) goes through connections of its
        # own on SQLite: WAL lets them read while the one writer writes, each in its own thread, so a
        # poll never holds up the engine's commits, nor waits for them (PostgreSQL: the same pool)
        self.read_engine = self.engine
        self.read_sessions = self.sessions
        if self.is_sqlite and path and path != ":memory:":
            self.read_engine = create_async_engine(
                async_url(url),
                json_serializer=_json_dumps,
                json_deserializer=orjson.loads,
                pool_size=2,
                max_overflow=0,
                connect_args={"timeout": 30},
            )
            sa.event.listen(self.read_engine.sync_engine, "connect", _sqlite_reader_pragmas)
            sa.event.listen(self.read_engine.sync_engine, "begin", _sqlite_reader_begin)
            self.read_sessions = async_sessionmaker(self.read_engine, expire_on_commit=False)

    async def open(self) -> None:
        async with self.exclusive():
            await self.migrate()
            self.id = await self._made_once("store_id", uuid.uuid4().hex[:12])
            self.command_secret = bytes.fromhex(
                await self._made_once("command_secret", secrets.token_hex(32))
            )

    @contextlib.asynccontextmanager
    async def exclusive(self) -> AsyncIterator[None]:
        """One controller at a time (PostgreSQL advisory lock): controllers started together on one store
        migrate it, make its ids and sync the inventory one after the other, never racing to insert."""
        if self.is_sqlite:  # SQLite's own write lock serializes them
            yield
            return
        async with self.engine.connect() as conn:
            await conn.execute(sa.text("SELECT pg_advisory_lock(:key)"), {"key": STARTUP_LOCK})
            try:
                yield
            finally:
                await conn.execute(sa.text("SELECT pg_advisory_unlock(:key)"), {"key": STARTUP_LOCK})

    async def _made_once(self, key: str, value: str) -> str:
        """A random value made once per store. store_id: command ids carry it, so a new store never
        repeats one; command_secret: keys their unguessable part, the same after a restart."""
        async with self.tx() as s:
            found = await s.get(Meta, key)
            if found is not None:
                return found.value
            s.add(Meta(key=key, value=value))
        async with self.tx() as s:  # another controller may have written it first: read what won
            return str(await s.scalar(sa.select(Meta.value).where(Meta.key == key)))

    async def migrate(self) -> None:
        def upgrade(conn: sa.Connection) -> None:
            cfg = AlembicConfig()
            cfg.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
            cfg.attributes["connection"] = conn
            alembic_command.upgrade(cfg, "head")

        async with self.engine.begin() as conn:
            await conn.run_sync(upgrade)

    async def close(self) -> None:
        await self.engine.dispose()
        if self.read_engine is not self.engine:
            await self.read_engine.dispose()

    async def ping(self) -> None:
        async with self.tx() as s:
            await s.execute(sa.text("SELECT 1"))

    @contextlib.asynccontextmanager
    async def tx(self) -> AsyncIterator[AsyncSession]:
        async with self.sessions() as session, session.begin():
            yield session

    @contextlib.asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        """A transaction that only reads (SQLite: on a reader connection, which refuses writes)."""
        async with self.read_sessions() as session, session.begin():
            yield session
