"""The store's schema (SQLAlchemy). Idempotency lives here, in unique keys, not in code:
(task, node) is unique, a command id is a primary key, and a cluster is held by at most one task.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes on every backend (SQLite keeps no offset)."""

    impl = sa.DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


def now() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: sa.JSON, list[int]: sa.JSON}


class Cluster(Base):
    __tablename__ = "clusters"
    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    name: Mapped[str] = mapped_column(sa.String(128))
    ob_cluster_id: Mapped[int]
    status: Mapped[str] = mapped_column(sa.String(32))
    updated_at: Mapped[datetime]


class Zone(Base):
    __tablename__ = "zones"
    __table_args__ = (sa.UniqueConstraint("cluster_id", "name", name="uq_zone_cluster_name"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    cluster_id: Mapped[int] = mapped_column(sa.ForeignKey("clusters.id"))
    name: Mapped[str] = mapped_column(sa.String(128))
    status: Mapped[str] = mapped_column(sa.String(32))
    updated_at: Mapped[datetime]


class Server(Base):
    __tablename__ = "servers"
    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    cluster_id: Mapped[int] = mapped_column(sa.ForeignKey("clusters.id"), index=True)
    zone: Mapped[str] = mapped_column(sa.String(128))
    host: Mapped[str] = mapped_column(sa.String(255))
    ip: Mapped[str] = mapped_column(sa.String(64))
    sql_port: Mapped[int]
    rpc_port: Mapped[int]
    home_path: Mapped[str] = mapped_column(sa.String(1024))
    status: Mapped[str] = mapped_column(sa.String(32))
    updated_at: Mapped[datetime]


class Task(Base):
    __tablename__ = "tasks"
    __table_args__ = (sa.Index("ix_tasks_name", "name"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(128))
    cluster_id: Mapped[int] = mapped_column(sa.ForeignKey("clusters.id"), index=True)
    # equals cluster_id while the task holds its cluster: one active task per cluster, by the schema
    holds_cluster: Mapped[int | None] = mapped_column(unique=True)
    status: Mapped[str] = mapped_column(sa.String(32), index=True)
    operation: Mapped[str] = mapped_column(sa.String(32), server_default="EXECUTE")
    creator_id: Mapped[int]
    creator_name: Mapped[str] = mapped_column(sa.String(128))
    context: Mapped[dict[str, Any]]
    start_time: Mapped[datetime]
    finish_time: Mapped[datetime | None]


class Subtask(Base):
    __tablename__ = "subtasks"
    __table_args__ = (
        sa.UniqueConstraint("task_id", "node", name="uq_subtask_task_node"),
        sa.Index("ix_subtask_task_status", "task_id", "status"),
        sa.Index("ix_subtask_status", "status"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    task_id: Mapped[int] = mapped_column(sa.ForeignKey("tasks.id"))
    node: Mapped[str] = mapped_column(sa.String(64))
    step: Mapped[str] = mapped_column(sa.String(64))
    name: Mapped[str] = mapped_column(sa.String(128))
    description: Mapped[str] = mapped_column(sa.String(256))
    status: Mapped[str] = mapped_column(sa.String(32))
    operation: Mapped[str] = mapped_column(sa.String(32))
    parallel_idx: Mapped[int]
    run_time: Mapped[int]
    timeout: Mapped[int]
    waiting: Mapped[int] = mapped_column(comment="upstreams not yet SUCCESSFUL")
    upstreams: Mapped[list[int]]
    downstreams: Mapped[list[int]]
    context: Mapped[dict[str, Any]]
    start_time: Mapped[datetime | None]
    finish_time: Mapped[datetime | None]
    lease_owner: Mapped[str | None] = mapped_column(sa.String(128))
    lease_expires: Mapped[datetime | None]
    result: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON(none_as_null=True))


class SubtaskLog(Base):
    __tablename__ = "subtask_logs"
    id: Mapped[int] = mapped_column(primary_key=True)
    subtask_id: Mapped[int] = mapped_column(sa.ForeignKey("subtasks.id"), index=True)
    at: Mapped[datetime]
    line: Mapped[str] = mapped_column(sa.Text)


class HistoryEvent(Base):
    """One row per persisted transition, so a task's history can be read back."""

    __tablename__ = "events"
    id: Mapped[int] = mapped_column(primary_key=True)
    task_id: Mapped[int | None] = mapped_column(index=True)
    subtask_id: Mapped[int | None]
    entity: Mapped[str] = mapped_column(sa.String(32))
    entity_id: Mapped[int]
    from_status: Mapped[str | None] = mapped_column(sa.String(32))
    to_status: Mapped[str] = mapped_column(sa.String(32))
    at: Mapped[datetime]
    note: Mapped[str | None] = mapped_column(sa.Text)


class CommandRecord(Base):
    """Every command sent to an agent (or run agentless), by its id, with its result once known."""

    __tablename__ = "commands"
    command_id: Mapped[str] = mapped_column(sa.String(128), primary_key=True)
    subtask_id: Mapped[int] = mapped_column(index=True)
    agent_id: Mapped[str] = mapped_column(sa.String(128))
    kind: Mapped[str] = mapped_column(sa.String(32))
    created_at: Mapped[datetime]
    sends: Mapped[int]
    result: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON(none_as_null=True))
    finished_at: Mapped[datetime | None]


class CommandMark(Base):
    """Facts a command recorded before acting (e.g. "SIGTERM:4242:<start>"): a resumed command finds them."""

    __tablename__ = "command_marks"
    command_id: Mapped[str] = mapped_column(sa.String(128), primary_key=True)
    mark: Mapped[str] = mapped_column(sa.String(256), primary_key=True)
    at: Mapped[datetime]


class Meta(Base):
    """Facts about the store itself; `store_id` makes command ids unique across stores."""

    __tablename__ = "meta"
    key: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    value: Mapped[str] = mapped_column(sa.String(256))


def history(
    task_id: int | None,
    entity: str,
    entity_id: int,
    from_status: str | None,
    to_status: str,
    at: datetime,
    note: str | None = None,
    subtask_id: int | None = None,
) -> dict[str, Any]:
    """One HistoryEvent row, for a set-based insert."""
    return {
        "task_id": task_id,
        "subtask_id": subtask_id,
        "entity": entity,
        "entity_id": entity_id,
        "from_status": from_status,
        "to_status": to_status,
        "at": at,
        "note": note,
    }
