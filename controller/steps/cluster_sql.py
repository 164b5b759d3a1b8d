"""SQL access to a cluster's sys tenant: connect through any RUNNING server of the cluster, fall over to
the next when one fails; every statement under a timeout and written, with its outcome, to the log.
The password is read from its file when needed and never logged."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import asyncmy

from obstop.controller.config import ClusterSQLConfig
from obstop.controller.errors import ControllerError

Log = Callable[[str], Awaitable[None]]


class SQLUnavailable(ControllerError):
    """No server of the cluster answered SQL (or every one refused our credentials)."""

    name = "SQL_UNAVAILABLE"


class SQLFailed(ControllerError):
    name = "SQL_FAILED"


class ClusterSQL:
    def __init__(self, config: ClusterSQLConfig, endpoints: Sequence[tuple[str, int]], log: Log) -> None:
        self.config = config
        self.endpoints = list(endpoints)
        self.log = log
        self._conn: Any = None
        self._where = ""

    async def __aenter__(self) -> ClusterSQL:
        await self._connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _password(self) -> str:
        path = self.config.password_file
        return path.read_text().strip() if path else ""

    async def _connect(self, skip: str | None = None) -> None:
        reasons = []
        for ip, port in self.endpoints:
            where = f"{ip}:{port}"
            if where == skip:
                continue
            try:
                async with asyncio.timeout(self.config.connect_timeout):
                    self._conn = await asyncmy.connect(
                        host=ip,
                        port=port,
                        user=self.config.user,
                        password=self._password(),
                        db=self.config.database,
                        connect_timeout=self.config.connect_timeout,
                        autocommit=True,
                    )
                self._where = where
                await self.log(f"SQL connected to {where} as {self.config.user}")
                return
            except TimeoutError:
                reason = f"no answer within {self.config.connect_timeout:g}s"
            except (asyncmy.errors.Error, OSError) as exc:
                reason = _describe(exc)
            reasons.append(f"{where}: {reason}")
            await self.log(f"SQL connect to {where} failed: {reason}")
        raise SQLUnavailable(
            "no server of the cluster answered SQL (" + "; ".join(reasons or ["no RUNNING server"]) + ")"
        )

    async def execute(
        self,
        sql: str,
        args: Sequence[Any] | None = None,
        *,
        timeout: float | None = None,
        quiet: bool = False,
        once: bool = False,
    ) -> list[tuple[Any, ...]]:
        """Run one statement; on a lost connection, fall over once to another server. quiet: log
        failures only (for polls, whose progress the caller reports); once: never send it a second time
        (a statement that acts, like STOP SERVER: its error is the answer)."""
        for attempt in (1, 2):
            started = time.monotonic()
            limit = timeout or self.config.statement_timeout
            try:
                async with asyncio.timeout(limit):
                    async with self._conn.cursor() as cur:
                        await cur.execute(sql, args)
                        rows = list(await cur.fetchall() or [])
                ms = (time.monotonic() - started) * 1000
                if not quiet:
                    await self.log(
                        f"SQL [{self._where}] {_short(sql, args)} -> {len(rows)} row(s), {ms:.0f} ms"
                    )
                return rows
            except TimeoutError as exc:
                await self.log(f"SQL [{self._where}] {_short(sql, args)} -> timed out after {limit:g}s")
                raise SQLFailed(
                    f"statement timed out after {limit:g}s on {self._where}: {_short(sql, args)}"
                ) from exc
            except asyncmy.errors.OperationalError as exc:
                await self.log(f"SQL [{self._where}] {_short(sql, args)} -> {_describe(exc)}")
                if attempt == 2 or once:
                    raise SQLFailed(f"{_short(sql, args)} failed: {_describe(exc)}") from exc
                failed, self._conn = self._where, None
                await self._connect(skip=failed)
            except asyncmy.errors.Error as exc:
                await self.log(f"SQL [{self._where}] {_short(sql, args)} -> {_describe(exc)}")
                raise SQLFailed(f"{_short(sql, args)} failed: {_describe(exc)}") from exc
        raise AssertionError("unreachable")


def _describe(exc: BaseException) -> str:
    args: tuple[Any, ...] = tuple(getattr(exc, "args", ()))
    if len(args) >= 2 and isinstance(args[0], int):
        return f"error {args[0]}: {args[1]}"
    return str(exc) or type(exc).__name__


def _short(sql: str, args: Sequence[Any] | None) -> str:
    text = " ".join(sql.split())
    if args:
        text += f" {tuple(args)}"
    return text if len(text) <= 240 else text[:237] + "..."
