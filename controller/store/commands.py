"""Commands the controller sends (or runs agentless): recorded by id before they are sent, with their
result once known; and marks a command records before it acts (a signal), so a resumed run never repeats
one. Idempotency lives in the primary keys."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from obstop.controller.store.db import Database
from obstop.controller.store.models import CommandMark, CommandRecord, now

Begin = tuple[str, int, str, str]  # (command id, subtask id, agent id, kind)


async def begin(s: AsyncSession, begins: Sequence[Begin]) -> dict[str, dict[str, Any] | None]:
    """Record new command ids (count a re-send of a known one); answer each id's recorded result, if any."""
    ids = list({b[0] for b in begins})
    rows = await s.execute(
        sa.select(CommandRecord.command_id, CommandRecord.result).where(CommandRecord.command_id.in_(ids))
    )
    known = {cid: result for cid, result in rows}
    fresh = {b[0]: b for b in begins if b[0] not in known}
    if fresh:
        t0 = now()
        await s.execute(
            sa.insert(CommandRecord),
            [
                {
                    "command_id": cid,
                    "subtask_id": sid,
                    "agent_id": agent,
                    "kind": kind,
                    "created_at": t0,
                    "sends": 1,
                    "result": None,
                    "finished_at": None,
                }
                for cid, sid, agent, kind in fresh.values()
            ],
        )
    resent = [cid for cid, result in known.items() if result is None]
    if resent:
        await s.execute(
            sa.update(CommandRecord)
            .where(CommandRecord.command_id.in_(resent))
            .values(sends=CommandRecord.sends + 1)
        )
    return {cid: known.get(cid) for cid in ids}


class Commands:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def mark(self, command_id: str, mark: str) -> bool:
        """Record a mark of a command; True if it was already there (the primary key decides)."""
        try:
            async with self.db.tx() as s:
                if await s.get(CommandMark, (command_id, mark)) is not None:
                    return True
                s.add(CommandMark(command_id=command_id, mark=mark, at=now()))
        except sa.exc.IntegrityError:
            return True
        return False

    async def marks(self, command_id: str) -> list[str]:
        async with self.db.tx() as s:
            rows = await s.scalars(
                sa.select(CommandMark.mark)
                .where(CommandMark.command_id == command_id)
                .order_by(CommandMark.at)
            )
            return list(rows.all())

    async def of_subtasks(self, subtask_ids: Sequence[int]) -> list[CommandRecord]:
        async with self.db.tx() as s:
            query = sa.select(CommandRecord).where(CommandRecord.subtask_id.in_(list(subtask_ids)))
            return list((await s.scalars(query)).all())
