"""Claims are leases: a subtask taken READY -> RUNNING belongs to one controller until its lease expires.

On start a controller takes back every RUNNING subtask it owned (it was restarted); while it runs, every
controller keeps taking those whose lease expired (another controller died). PostgreSQL claims with `FOR
UPDATE SKIP LOCKED`, so several controllers never take the same subtask; SQLite has one writer. Expiry is
on the database's clock (`now()` in SQL): controllers whose clocks disagree still agree on who holds what.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from obstop.controller.states.subtask import CLAIM, MACHINE, SubtaskStatus
from obstop.controller.store.db import Database
from obstop.controller.store.journal import Journal
from obstop.controller.store.models import HistoryEvent, Subtask, SubtaskLog, history, now

RUNNING = SubtaskStatus.RUNNING
_COLUMNS = (
    Subtask.id,
    Subtask.task_id,
    Subtask.node,
    Subtask.step,
    Subtask.name,
    Subtask.run_time,
    Subtask.timeout,
    Subtask.operation,
    Subtask.context,
    Subtask.result,
    Subtask.status,
)

ST = cast(sa.Table, Subtask.__table__)
_CORE_COLUMNS = tuple(ST.c[c.key] for c in _COLUMNS)  # in Claimed's field order


@dataclass(frozen=True)
class Claimed:
    id: int
    task_id: int
    node: str
    step: str
    name: str
    run_time: int
    timeout: int
    operation: str
    context: dict[str, Any]
    result: dict[str, Any] | None = None  # what earlier runs recorded
    status: str = SubtaskStatus.RUNNING  # CANCELING: an operator cancelled it while it ran
    resumed: bool = False


@dataclass(frozen=True)
class Renewed:
    cancelling: list[int]  # an operator cancels these
    lost: list[int]  # no longer ours: another controller took them, or they ended


def stamp(t: datetime) -> str:
    return t.astimezone().isoformat(timespec="milliseconds")


def separator(t: datetime, run_time: int, operation: str) -> str:
    """What opens each run of a subtask in its log (OCP writes one per run)."""
    return f"==================== {stamp(t)} run {run_time} ({operation}) ===================="


def db_now(is_sqlite: bool) -> Any:
    """The database's clock, in UTC like the columns (SQLite: this host's, the only one writing)."""
    if is_sqlite:
        return now()
    return sa.func.timezone("UTC", sa.func.now())


def expiry(is_sqlite: bool, lease: float) -> Any:
    """A lease taken now ends lease seconds from now, on the database's clock."""
    if is_sqlite:
        return now() + timedelta(seconds=lease)
    return db_now(is_sqlite) + sa.literal(timedelta(seconds=lease), sa.Interval())


class Leases:
    def __init__(self, db: Database) -> None:
        self.db = db

    def _now(self) -> Any:
        return db_now(self.db.is_sqlite)

    def _expiry(self, lease: float) -> Any:
        return expiry(self.db.is_sqlite, lease)

    async def claim_ready(self, owner: str, lease: float, limit: int) -> list[Claimed]:
        async with self.db.tx() as s:
            return await claim_in(s, self.db.is_sqlite, owner, lease, limit)

    async def reclaim(
        self, owner: str, lease: float, running: Sequence[int] = (), *, ours: bool = True
    ) -> list[Claimed]:
        """RUNNING (or CANCELING) subtasks whose lease has expired (its controller died), or, with `ours`,
        is ours (we restarted): take them. `running`: those running here, never taken twice."""
        MACHINE.check(RUNNING, RUNNING)  # a resume stays put: no move
        t0 = now()
        async with self.db.tx() as s:
            taken = (
                sa.select(Subtask.id)
                .where(
                    Subtask.status.in_([RUNNING, SubtaskStatus.CANCELING]),
                    Subtask.id.not_in(list(running)),
                    sa.or_(
                        Subtask.lease_owner == owner if ours else sa.false(),
                        Subtask.lease_expires < self._now(),
                        Subtask.lease_owner.is_(None),
                    ),
                )
                .order_by(Subtask.id)
            )
            if not self.db.is_sqlite:  # another controller reclaiming now skips these: one taker each
                taken = taken.with_for_update(skip_locked=True)
            rows = (
                await s.execute(
                    sa.update(Subtask)
                    .execution_options(synchronize_session=False)
                    .where(Subtask.id.in_(taken.scalar_subquery()))
                    .values(lease_owner=owner, lease_expires=self._expiry(lease))
                    .returning(*_COLUMNS)
                )
            ).all()
            claimed = [Claimed(**r._asdict(), resumed=True) for r in rows]
            if claimed:
                await s.execute(
                    sa.insert(HistoryEvent),
                    [
                        history(
                            c.task_id, "subtask", c.id, c.status, c.status, t0, f"resumed by {owner}", c.id
                        )
                        for c in claimed
                    ],
                )
                line = (
                    f"{stamp(t0)} resumed by {owner} (a restart, or its controller's lease expired); "
                    "re-checking and re-running this step (its command id is unchanged)"
                )
                await s.execute(
                    sa.insert(cast(sa.Table, SubtaskLog.__table__)),
                    [{"subtask_id": c.id, "at": t0, "line": line} for c in claimed],
                )
        return claimed

    async def renew(self, owner: str, ids: Sequence[int], lease: float) -> Renewed:
        """Extend our leases. Answers those of them an operator is cancelling (another controller's API may
        have taken the cancel), and those no longer ours (taken over, or ended by someone else)."""
        if not ids:
            return Renewed([], [])
        async with self.db.tx() as s:
            kept = await s.scalars(
                sa.update(Subtask)
                .execution_options(synchronize_session=False)
                .where(
                    Subtask.id.in_(list(ids)),
                    Subtask.lease_owner == owner,
                    Subtask.status.in_([RUNNING, SubtaskStatus.CANCELING]),
                )
                .values(lease_expires=self._expiry(lease))
                .returning(Subtask.id)
            )
            held = set(kept.all())
            found = await s.scalars(
                sa.select(Subtask.id).where(
                    Subtask.id.in_(list(held)), Subtask.status == SubtaskStatus.CANCELING
                )
            )
            return Renewed(list(found.all()), [i for i in ids if i not in held])


async def claim_in(
    s: AsyncSession,
    is_sqlite: bool,
    owner: str,
    lease: float,
    limit: int,
    journal: Journal | None = None,
) -> list[Claimed]:
    """READY -> RUNNING under owner's lease, up to limit subtasks, in the caller's transaction (the
    engine's own claims, and those made in the transaction of the finishes that promoted them). Their
    history rows and log lines go to `journal` (the caller writes it), else are written here."""
    frm, to = CLAIM
    t0 = now()
    ids = sa.select(ST.c.id).where(ST.c.status == frm).order_by(ST.c.id).limit(limit)
    if not is_sqlite:
        # evaluated once, as a materialized CTE: PostgreSQL may otherwise run a LIMITed `IN (SELECT ... FOR
        # UPDATE SKIP LOCKED)` again per row, each run skipping the rows the update just locked, and
        # claim more than limit (4 subtasks for max_concurrency 1 were seen running at once)
        taken = ids.with_for_update(skip_locked=True).cte("claimable").prefix_with("MATERIALIZED")
        ids = sa.select(taken.c.id)
    rows = (
        await s.execute(
            sa.update(ST)
            .where(ST.c.id.in_(ids.scalar_subquery()), ST.c.status == frm)
            .values(
                status=to,
                run_time=ST.c.run_time + 1,
                start_time=t0,
                finish_time=None,
                lease_owner=owner,
                lease_expires=expiry(is_sqlite, lease),
            )
            .returning(*_CORE_COLUMNS)
        )
    ).all()
    claimed = [Claimed(*r) for r in rows]
    if claimed:
        into = journal or Journal()
        into.events += [
            history(c.task_id, "subtask", c.id, frm, to, t0, f"run {c.run_time} by {owner}", c.id)
            for c in claimed
        ]
        into.lines += [
            {"subtask_id": c.id, "at": t0, "line": separator(t0, c.run_time, c.operation)} for c in claimed
        ]
        if journal is None:
            await into.flush(s)
    return claimed
