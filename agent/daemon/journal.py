"""The agent's command journal (SQLite in its state directory).

A command id seen again, after a broker redelivery, a controller re-send or an agent restart, gets the
recorded result and is never executed twice. Signals are marked before they are sent, so a command cut
off by a crash is finished after restart without signalling again.

Every call is one short transaction on the journal's own thread (one connection, used by that thread
only, so calls are serialized without a lock), and each answers everything its caller needs next: a
command begun comes back with the marks already recorded for its id (a cancel may come first).
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS commands (
  command_id TEXT PRIMARY KEY,
  payload TEXT NOT NULL,
  received_at REAL NOT NULL,
  result TEXT,
  finished_at REAL
);
CREATE TABLE IF NOT EXISTS marks (
  command_id TEXT NOT NULL,
  mark TEXT NOT NULL,
  at REAL NOT NULL,
  PRIMARY KEY (command_id, mark)
);
"""


@dataclass(frozen=True)
class Entry:
    command_id: str
    payload: str
    result: dict[str, Any] | None
    marks: tuple[str, ...] = ()  # in the order recorded (signals sent, a launch, a cancel)
    new: bool = False  # recorded by this very call of `begin`


class Journal:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="journal")
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        # WAL + NORMAL survives an agent crash; a power cut may lose the last records, but then the
        # observers are down too, and a re-sent id finds them already stopped
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)

    async def _run(self, fn: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn)

    def _marks(self, command_id: str) -> tuple[str, ...]:
        rows = self._db.execute(
            "SELECT mark FROM marks WHERE command_id = ? ORDER BY at, rowid", (command_id,)
        ).fetchall()
        return tuple(r[0] for r in rows)

    def _entry(self, command_id: str) -> Entry | None:
        row = self._db.execute(
            "SELECT payload, result FROM commands WHERE command_id = ?", (command_id,)
        ).fetchone()
        if row is None:
            return None
        return Entry(command_id, row[0], json.loads(row[1]) if row[1] else None, self._marks(command_id))

    async def begin(self, command_id: str, payload: str) -> Entry:
        """Record a new command (`new` is then True), or return the entry of an id seen before; either
        way with the marks already recorded for it."""

        def work() -> Entry:
            with self._db:
                found = self._entry(command_id)
                if found is not None:
                    return found
                self._db.execute(
                    "INSERT INTO commands (command_id, payload, received_at) VALUES (?, ?, ?)",
                    (command_id, payload, time.time()),
                )
                return Entry(command_id, payload, None, self._marks(command_id), new=True)

        return await self._run(work)

    async def record(self, command_id: str, payload: str, result: dict[str, Any]) -> Entry | None:
        """Record a command with its result in one go (one that acts on nothing, a probe: nothing of it
        needs to be durable before it runs); None, or the entry already there if the id was seen before."""

        def work() -> Entry | None:
            with self._db:
                found = self._entry(command_id)
                if found is not None:
                    return found
                now = time.time()
                self._db.execute(
                    "INSERT INTO commands (command_id, payload, received_at, result, finished_at) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (command_id, payload, now, json.dumps(result), now),
                )
                return None

        return await self._run(work)

    async def finish(self, command_id: str, result: dict[str, Any]) -> None:
        def work() -> None:
            with self._db:
                self._db.execute(
                    "UPDATE commands SET result = ?, finished_at = ? WHERE command_id = ? AND result IS NULL",
                    (json.dumps(result), time.time(), command_id),
                )

        await self._run(work)

    async def mark(self, command_id: str, mark: str) -> bool:
        """True if the mark was there already."""

        def work() -> bool:
            with self._db:
                cur = self._db.execute(
                    "INSERT OR IGNORE INTO marks (command_id, mark, at) VALUES (?, ?, ?)",
                    (command_id, mark, time.time()),
                )
                return cur.rowcount == 0

        return await self._run(work)

    async def entry(self, command_id: str) -> Entry | None:
        return await self._run(lambda: self._entry(command_id))

    async def marks(self, command_id: str) -> list[str]:
        """A command's marks in the order they were recorded (signals sent, a launch, a cancel)."""
        return list(await self._run(lambda: self._marks(command_id)))

    async def unfinished(self) -> list[Entry]:
        def work() -> list[Entry]:
            rows = self._db.execute(
                "SELECT command_id, payload FROM commands WHERE result IS NULL"
            ).fetchall()
            return [Entry(r[0], r[1], None, self._marks(r[0])) for r in rows]

        return await self._run(work)

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        self._db.close()


class CommandMarks:
    """The procedure's SignalJournal for one command."""

    def __init__(self, journal: Journal, command_id: str) -> None:
        self._journal = journal
        self._command_id = command_id

    async def record(self, mark: str) -> bool:
        return await self._journal.mark(self._command_id, mark)

    async def marks(self) -> list[str]:
        return await self._journal.marks(self._command_id)
