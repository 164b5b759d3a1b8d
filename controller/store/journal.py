"""What a transaction writes about itself: history rows and log lines, inserted once at its end.

A group commit finishes, promotes and claims subtasks in several steps; each step used to insert its own
history rows and log lines, a statement each. They are gathered here instead, in the order they were
made (their ids keep that order), and written with two statements just before the commit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from obstop.controller.store.models import HistoryEvent, SubtaskLog

EVENTS = cast(sa.Table, HistoryEvent.__table__)
LOGS = cast(sa.Table, SubtaskLog.__table__)


@dataclass
class Journal:
    events: list[dict[str, Any]] = field(default_factory=list)  # models.history() rows
    lines: list[dict[str, Any]] = field(default_factory=list)  # {subtask_id, at, line}

    async def flush(self, s: AsyncSession) -> None:
        """Insert what was gathered (Core inserts: one statement each, whatever the rows hold)."""
        events, lines = self.events, self.lines
        self.events, self.lines = [], []
        if events:
            await s.execute(sa.insert(EVENTS), events)
        if lines:
            await s.execute(sa.insert(LOGS), lines)
