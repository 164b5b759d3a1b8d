"""The durable store: SQLite (default) or PostgreSQL, one module per concern.

    db          the engine, sessions, migrations, the store's own id
    models      the schema; idempotency lives in its unique keys
    clusters    the inventory synced in; clusters, zones and servers read back
    tasks       a task's DAG stored in one transaction; tasks read back
    leases      claims as leases, reclaim after a restart, renewal
    finish      finishes with their status moves, promotions and task statuses
    batch       the group commit: logs, command records, finishes, the next stage claimed with them
    operations  what an operator does to a task (retry, ...)
    commands    command records and marks
    audit       the audit trail: every call that changed something

Every status change is a compare-and-set through its machine in controller/states, committed with a
history row before anyone acts on it. Imported by the engine, the API (reads) and the daemon; it knows
nothing of them.
"""

from __future__ import annotations

from obstop.controller.store.audit import Audit
from obstop.controller.store.batch import ClaimRequest, Finishes, Handoff
from obstop.controller.store.clusters import Clusters
from obstop.controller.store.commands import Commands
from obstop.controller.store.db import Database
from obstop.controller.store.finish import Finished, FinishRequest, LeaseLost
from obstop.controller.store.leases import Claimed, Leases
from obstop.controller.store.operations import Operations
from obstop.controller.store.tasks import NodeLike, Tasks


class Store:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.clusters = Clusters(db)
        self.tasks = Tasks(db)
        self.leases = Leases(db)
        self.finishes = Finishes(db)
        self.operations = Operations(db)
        self.commands = Commands(db)
        self.audit = Audit(db)

    @classmethod
    async def open(cls, url: str) -> Store:
        db = Database(url)
        try:
            await db.open()
        except BaseException:
            await db.close()
            raise
        return cls(db)

    @property
    def id(self) -> str:
        return self.db.id

    async def close(self) -> None:
        await self.db.close()


__all__ = [
    "ClaimRequest",
    "Claimed",
    "FinishRequest",
    "Finished",
    "Handoff",
    "LeaseLost",
    "NodeLike",
    "Store",
]
