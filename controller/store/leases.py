"""Claims are leases: a subtask taken READY -> RUNNING belongs to one controller until its lease expires.

On start a controller takes back every RUNNING subtask it owned (it was restarted) or whose lease expired
(another controller died). PostgreSQL claims with `FOR UPDATE SKIP LOCKED`, so several controllers never
take the same subtask; SQLite has one writer.
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


def stamp(t: datetime) -> str:
    return t.astimezone().isoformat(timespec="milliseconds")


def separator(t: datetime, run_time: int, operation: str) -> str:
    """What opens each run of a subtask in its log (OCP writes one per run)."""
    return f"==================== {stamp(t)} run {run_time} ({operation}) ===================="


class Leases:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def claim_ready(self, owner: str, lease: float, limit: int) -> list[Claimed]:
        async with self.db.tx() as s:
            return await claim_in(s, self.db.is_sqlite, owner, lease, limit)

    async def reclaim(self, owner: str, lease: float) -> list[Claimed]:
        """RUNNING (or CANCELING) subtasks whose lease is ours (we restarted) or has expired: take them."""
        MACHINE.check(RUNNING, RUNNING)  # a resume stays put: no move
        t0 = now()
        async with self.db.tx() as s:
            rows = (
                await s.execute(
                    sa.update(Subtask)
                    .execution_options(synchronize_session=False)
                    .where(
                        Subtask.status.in_([RUNNING, SubtaskStatus.CANCELING]),
                        sa.or_(
                            Subtask.lease_owner == owner,
                            Subtask.lease_expires < t0,
                            Subtask.lease_owner.is_(None),
                        ),
                    )
                    .values(lease_owner=owner, lease_expires=t0 + timedelta(seconds=lease))
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
                    f"{stamp(t0)} resumed by {owner} after a restart; "
                    "re-checking and re-running this step (its command id is unchanged)"
                )
                await s.execute(
                    sa.insert(cast(sa.Table, SubtaskLog.__table__)),
                    [{"subtask_id": c.id, "at": t0, "line": line} for c in claimed],
                )
        return claimed

    async def renew(self, owner: str, ids: Sequence[int], lease: float) -> list[int]:
        """Extend our leases; answers those of them an operator is cancelling (another controller's
        API may have taken the cancel)."""
        if not ids:
            return []
        async with self.db.tx() as s:
            await s.execute(
                sa.update(Subtask)
                .execution_options(synchronize_session=False)
                .where(
                    Subtask.id.in_(list(ids)),
                    Subtask.lease_owner == owner,
                    Subtask.status.in_([RUNNING, SubtaskStatus.CANCELING]),
                )
                .values(lease_expires=now() + timedelta(seconds=lease))
            )
            found = await s.scalars(
                sa.select(Subtask.id).where(
                    Subtask.id.in_(list(ids)), Subtask.status == SubtaskStatus.CANCELING
                )
            )
            return list(found.all())


async def claim_in(s: AsyncSession, is_sqlite: bool, owner: str, lease: float, limit: int) -> list[Claimed]:
    """READY -> RUNNING under owner's lease, up to limit subtasks, in the caller's transaction (the
    engine's own claims, and those made in the transaction of the finishes that promoted them)."""
    frm, to = CLAIM
    t0 = now()
    ids = sa.select(Subtask.id).where(Subtask.status == frm).order_by(Subtask.id).limit(limit)
    if not is_sqlite:
        ids = ids.with_for_update(skip_locked=True)
    rows = (
        await s.execute(
            sa.update(Subtask)
            .execution_options(synchronize_session=False)
            .where(Subtask.id.in_(ids.scalar_subquery()), Subtask.status == frm)
            .values(
                status=to,
                run_time=Subtask.run_time + 1,
                start_time=t0,
                finish_time=None,
                lease_owner=owner,
                lease_expires=t0 + timedelta(seconds=lease),
            )
            .returning(*_COLUMNS)
        )
    ).all()
    claimed = [Claimed(**r._asdict()) for r in rows]
    if claimed:
        await s.execute(
            sa.insert(HistoryEvent),
            [
                history(c.task_id, "subtask", c.id, frm, to, t0, f"run {c.run_time} by {owner}", c.id)
                for c in claimed
            ],
        )
        await s.execute(
            sa.insert(cast(sa.Table, SubtaskLog.__table__)),
            [{"subtask_id": c.id, "at": t0, "line": separator(t0, c.run_time, c.operation)} for c in claimed],
        )
    return claimed
