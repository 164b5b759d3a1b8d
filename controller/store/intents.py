"""Which zones and servers of a cluster are down on purpose, read from its ended tasks (controller/states/
intent.py says how): the SUCCESSFUL ones that were not rolled back, newest first, back to the last one
that acted on the whole cluster."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from obstop.controller.states.intent import HeldDown, held_down, resets
from obstop.controller.states.task import TaskOperation, TaskStatus
from obstop.controller.store.models import Task

PAGE = 200


async def read_held_down(s: AsyncSession, cluster_id: int) -> HeldDown:
    query = (
        sa.select(Task.context)
        .where(
            Task.cluster_id == cluster_id,
            Task.status == TaskStatus.SUCCESSFUL,
            Task.operation != TaskOperation.ROLLBACK,
        )
        .order_by(Task.finish_time.desc(), Task.id.desc())
    )
    newest_first: list[dict[str, Any]] = []
    offset = 0
    while True:
        page = (await s.scalars(query.offset(offset).limit(PAGE))).all()
        for context in page:
            if resets(context):
                return held_down(reversed(newest_first))
            newest_first.append(context)
        if len(page) < PAGE:
            return held_down(reversed(newest_first))
        offset += PAGE
