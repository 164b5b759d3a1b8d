"""The audit trail: who changed what, from where, when, with what request and answer.

One row per call that changes something (every POST, PUT, PATCH and DELETE under /api/ that passed
authentication), written by the API's audit middleware before the answer leaves, so a caller who has
its answer can find its entry. Read back newest first, a page at a time.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from obstop.controller.store.db import Database
from obstop.controller.store.models import Base, now

MAX_BODY = 2048  # characters of a request body kept (bodies of this API are under 100 bytes)
MAX_TEXT = 1024


class AuditEntry(Base):
    __tablename__ = "audit"
    __table_args__ = (sa.Index("ix_audit_user", "user_name"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime]
    user_name: Mapped[str] = mapped_column(sa.String(128))
    client: Mapped[str] = mapped_column(sa.String(64))
    method: Mapped[str] = mapped_column(sa.String(8))
    path: Mapped[str] = mapped_column(sa.String(MAX_TEXT))
    query: Mapped[str] = mapped_column(sa.String(MAX_TEXT))
    body: Mapped[str] = mapped_column(sa.Text)
    trace_id: Mapped[str] = mapped_column(sa.String(64))
    status: Mapped[int]


@dataclass(frozen=True)
class Call:
    """One call, as the middleware saw it."""

    user: str
    client: str
    method: str
    path: str
    query: str
    body: str
    trace_id: str
    status: int


def _bounded(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


class Audit:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def record(self, call: Call) -> int:
        async with self.db.tx() as s:
            entry = AuditEntry(
                at=now(),
                user_name=_bounded(call.user, 128),
                client=_bounded(call.client, 64),
                method=call.method[:8],
                path=_bounded(call.path, MAX_TEXT),
                query=_bounded(call.query, MAX_TEXT),
                body=_bounded(call.body, MAX_BODY),
                trace_id=call.trace_id[:64],
                status=call.status,
            )
            s.add(entry)
            await s.flush()
            return entry.id

    async def page(
        self, page: int, size: int, user: str | None = None, path: str | None = None
    ) -> tuple[list[AuditEntry], int]:
        """Newest first; `path` matches a part of the path."""
        where = []
        if user is not None:
            where.append(AuditEntry.user_name == user)
        if path is not None:
            where.append(AuditEntry.path.contains(path, autoescape=True))
        async with self.db.tx() as s:
            total = int(await s.scalar(sa.select(sa.func.count()).select_from(AuditEntry).where(*where)) or 0)
            rows = (
                await s.scalars(
                    sa.select(AuditEntry)
                    .where(*where)
                    .order_by(AuditEntry.id.desc())
                    .offset((page - 1) * size)
                    .limit(size)
                )
            ).all()
        return list(rows), total
