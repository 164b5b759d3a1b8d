"""The shared state of a fake OceanBase cluster: every fake observer of the cluster reads and writes it,
so any of them answers SQL as the cluster would.

A SQLite file in the cluster directory holds the servers (alive when their process is), pending minor
freezes (each advances its server's checkpoint_scn when it comes due), stopped zones and servers, the
settings (password, freeze delay, misbehaviours), every SQL connection and every statement received (with
the connection it came on), for tests to read.

Log streams (logstreams.py) are laid out across the zones from the servers registered, and answer
GV$OB_LOG_STAT from which observers are alive: leaders are elected among live replicas outside stopped
zones and servers, and only while a majority of a stream's replicas lives.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from obstop.fakes.logstreams import LogStatRow, elect, layout, loss, stat_rows

DB = "cluster.db"
BASE_SCN = 1_700_000_000_000_000_000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS servers (
  ip TEXT NOT NULL, rpc_port INTEGER NOT NULL, sql_port INTEGER NOT NULL, zone TEXT NOT NULL,
  pid INTEGER NOT NULL, started REAL NOT NULL, stop_time INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (ip, rpc_port));
CREATE TABLE IF NOT EXISTS freezes (ip TEXT NOT NULL, rpc_port INTEGER NOT NULL, due_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS stopped_zones (zone TEXT PRIMARY KEY);
CREATE TABLE IF NOT EXISTS leaders (tenant_id INTEGER NOT NULL, ls_id INTEGER NOT NULL, leader TEXT NOT NULL,
  PRIMARY KEY (tenant_id, ls_id));
CREATE TABLE IF NOT EXISTS statements (
  id INTEGER PRIMARY KEY AUTOINCREMENT, at REAL NOT NULL, server TEXT NOT NULL, sql TEXT NOT NULL,
  conn INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS connections (
  id INTEGER PRIMARY KEY AUTOINCREMENT, at REAL NOT NULL, server TEXT NOT NULL, closed REAL);
"""


@dataclass(frozen=True)
class Statement:
    at: float
    server: str
    sql: str
    conn: int = 0  # the connection it came on (connections())


@dataclass(frozen=True)
class Connection:
    id: int
    at: float
    server: str
    closed: float | None  # when the client closed it (None: still open, or dropped unseen)


@dataclass(frozen=True)
class ServerRow:
    ip: str
    rpc_port: int
    sql_port: int
    zone: str
    pid: int
    stop_time: int

    @property
    def key(self) -> str:
        return f"{self.ip}:{self.rpc_port}"

    @property
    def alive(self) -> bool:
        try:
            with open(f"/proc/{self.pid}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            return False
        return state != "Z"


class FakeCluster:
    """Synchronous, short transactions; the fake observer calls it through asyncio.to_thread."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        directory.mkdir(parents=True, exist_ok=True)
        self._path = directory / DB
        with self._db() as db:
            db.executescript(_SCHEMA)

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self._path, timeout=30, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            yield db
        finally:
            db.close()

    @classmethod
    def create(
        cls, directory: Path, *, password: str = "", freeze_delay: float = 0.2, freeze_never: bool = False
    ) -> FakeCluster:
        cluster = cls(directory)
        cluster.configure(password=password, freeze_delay=freeze_delay, freeze_never=freeze_never)
        return cluster

    def configure(self, **settings: object) -> None:
        with self._db() as db:
            for key, value in settings.items():
                db.execute("INSERT OR REPLACE INTO settings VALUES (?, ?)", (key, str(value)))

    def setting(self, key: str, default: str = "") -> str:
        with self._db() as db:
            row = db.execute("SELECT value FROM settings WHERE key = ?", (key,)).fetchone()
        return row[0] if row else default

    # --- what the fake observers do ------------------------------------------------------------------

    def register(self, ip: str, rpc_port: int, sql_port: int, zone: str, pid: int | None = None) -> None:
        """A server (re)starting; a STOP SERVER it had stays until START SERVER, as in OceanBase."""
        with self._db() as db:
            db.execute(
                "INSERT INTO servers (ip, rpc_port, sql_port, zone, pid, started, stop_time) "
                "VALUES (?, ?, ?, ?, ?, ?, 0) ON CONFLICT (ip, rpc_port) DO UPDATE SET "
                "sql_port = excluded.sql_port, zone = excluded.zone, pid = excluded.pid, "
                "started = excluded.started",
                (ip, rpc_port, sql_port, zone, os.getpid() if pid is None else pid, time.time()),
            )

    def register_all(self, servers: list[tuple[str, int, int, str]], pid: int) -> None:
        """Many servers (ip, rpc_port, sql_port, zone) at once, all alive while process pid lives (one
        process answering for a whole cluster: the scale benchmark's)."""
        with self._db() as db:
            db.execute("BEGIN")
            db.executemany(
                "INSERT OR REPLACE INTO servers (ip, rpc_port, sql_port, zone, pid, started, stop_time) "
                "VALUES (?, ?, ?, ?, ?, ?, 0)",
                [(ip, rpc, sql, zone, pid, time.time()) for ip, rpc, sql, zone in servers],
            )
            db.execute("COMMIT")

    def connect(self, server: str) -> int:
        """A client's SQL connection to server (its SQL address) was established: its id."""
        with self._db() as db:
            cur = db.execute("INSERT INTO connections (at, server) VALUES (?, ?)", (time.time(), server))
            return int(cur.lastrowid or 0)

    def disconnect(self, conn: int) -> None:
        with self._db() as db:
            db.execute("UPDATE connections SET closed = ? WHERE id = ?", (time.time(), conn))

    def record(self, server: str, sql: str, conn: int = 0) -> None:
        with self._db() as db:
            db.execute(
                "INSERT INTO statements (at, server, sql, conn) VALUES (?, ?, ?, ?)",
                (time.time(), server, sql, conn),
            )

    def servers(self) -> list[ServerRow]:
        with self._db() as db:
            rows = db.execute(
                "SELECT ip, rpc_port, sql_port, zone, pid, stop_time FROM servers ORDER BY zone, ip"
            ).fetchall()
        return [ServerRow(*r) for r in rows]

    def zones(self) -> list[tuple[str, str]]:
        with self._db() as db:
            stopped = {r[0] for r in db.execute("SELECT zone FROM stopped_zones")}
        return [
            (z, "INACTIVE" if z in stopped else "ACTIVE") for z in sorted({s.zone for s in self.servers()})
        ]

    def freeze(self, servers: list[tuple[str, int]]) -> None:
        if self.setting("freeze_never") == "True":
            return
        due = time.time() + float(self.setting("freeze_delay", "0.2"))
        with self._db() as db:
            db.execute("BEGIN")  # one commit for all (a freeze of 1,000 servers answers at once)
            db.executemany("INSERT INTO freezes VALUES (?, ?, ?)", [(ip, port, due) for ip, port in servers])
            db.execute("COMMIT")

    def checkpoint(self, ip: str, rpc_port: int) -> int | None:
        """Minimum checkpoint_scn of the server's log streams; None when it is down (no row)."""
        return self.checkpoints([(ip, rpc_port)]).get((ip, rpc_port))

    def checkpoints(self, servers: list[tuple[str, int]]) -> dict[tuple[str, int], int]:
        """The minimum checkpoint_scn of each of these servers that is up (one that is down has none):
        it grows by one step per freeze of the server that has come due."""
        wanted = set(servers)
        rows = [s for s in self.servers() if (s.ip, s.rpc_port) in wanted]
        alive: dict[int, bool] = {}
        for r in rows:
            if r.pid not in alive:
                alive[r.pid] = r.alive
        with self._db() as db:
            done = {
                (ip, port): int(n)
                for ip, port, n in db.execute(
                    "SELECT ip, rpc_port, count(*) FROM freezes WHERE due_at <= ? GROUP BY ip, rpc_port",
                    (time.time(),),
                )
            }
        return {
            (r.ip, r.rpc_port): BASE_SCN + 1_000_000 * done.get((r.ip, r.rpc_port), 0)
            for r in rows
            if alive[r.pid]
        }

    def stop_zone(self, zone: str) -> None:
        with self._db() as db:
            db.execute("INSERT OR IGNORE INTO stopped_zones VALUES (?)", (zone,))

    def start_zone(self, zone: str) -> None:
        with self._db() as db:
            db.execute("DELETE FROM stopped_zones WHERE zone = ?", (zone,))

    def stop_server(self, ip: str, rpc_port: int) -> None:
        with self._db() as db:
            db.execute(
                "UPDATE servers SET stop_time = ? WHERE ip = ? AND rpc_port = ? AND stop_time = 0",
                (int(time.time() * 1_000_000), ip, rpc_port),
            )

    def start_server(self, ip: str, rpc_port: int) -> None:
        with self._db() as db:
            db.execute("UPDATE servers SET stop_time = 0 WHERE ip = ? AND rpc_port = ?", (ip, rpc_port))

    def stopped_zones(self) -> set[str]:
        with self._db() as db:
            return {r[0] for r in db.execute("SELECT zone FROM stopped_zones")}

    def log_stat(self) -> list[LogStatRow]:
        """GV$OB_LOG_STAT: a row per replica on a live server, after electing leaders where needed."""
        servers = self.servers()
        streams = layout([(s.key, s.zone) for s in servers])
        live = {s.key for s in servers if s.alive}
        stopped_zones = self.stopped_zones()
        serving = {s.key for s in servers if s.key in live and not (s.stop_time or s.zone in stopped_zones)}
        with self._db() as db:
            db.execute("BEGIN IMMEDIATE")  # observers answer at once: one election at a time
            current = {(t, ls): leader for t, ls, leader in db.execute("SELECT * FROM leaders")}
            leaders = {st.key: elect(st, current.get(st.key, ""), live, serving) for st in streams}
            db.executemany(
                "INSERT OR REPLACE INTO leaders VALUES (?, ?, ?)",
                [(t, ls, leader) for (t, ls), leader in leaders.items()],
            )
            db.execute("COMMIT")
        return stat_rows(streams, leaders, live)

    def majority_loss(self, stopping: set[str]) -> str | None:
        """Why stopping these servers ('ip:rpc_port') would leave a log stream without a majority of live
        replicas (as OceanBase refuses STOP ZONE/SERVER), or None."""
        servers = self.servers()
        stopped_zones = self.stopped_zones()
        up = {
            s.key
            for s in servers
            if s.alive and not s.stop_time and s.zone not in stopped_zones and s.key not in stopping
        }
        return loss(layout([(s.key, s.zone) for s in servers]), stopping, up)

    # --- what tests read -----------------------------------------------------------------------------

    def statements(self) -> list[Statement]:
        with self._db() as db:
            rows = db.execute("SELECT at, server, sql, conn FROM statements ORDER BY id").fetchall()
        return [Statement(*r) for r in rows]

    def connections(self) -> list[Connection]:
        with self._db() as db:
            rows = db.execute("SELECT id, at, server, closed FROM connections ORDER BY id").fetchall()
        return [Connection(*r) for r in rows]
