"""Tasks and their subtasks: a DAG stored in one transaction, and read back for the API and the engine."""

from __future__ import annotations

from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any, Protocol, cast

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from obstop.controller.errors import ClusterOpsNotAllowed, NotFound, TaskNotFound
from obstop.controller.states.subtask import Operation, SubtaskStatus
from obstop.controller.states.task import TaskOperation, TaskStatus
from obstop.controller.store.db import Database
from obstop.controller.store.models import Cluster, HistoryEvent, Subtask, SubtaskLog, Task, history, now


class NodeLike(Protocol):
    """One subtask of a DAG before it is stored (the steps' NodeSpec): its key, step and upstream keys."""

    @property
    def node(self) -> str: ...
    @property
    def step(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def description(self) -> str: ...
    @property
    def upstreams(self) -> tuple[str, ...]: ...
    @property
    def parallel_idx(self) -> int: ...
    @property
    def timeout(self) -> int: ...
    @property
    def context(self) -> dict[str, Any]: ...


SORTABLE: dict[str, Any] = {
    "id": Task.id,
    "name": Task.name,
    "status": Task.status,
    "startTime": Task.start_time,
    "finishTime": Task.finish_time,
}


_BRIEF = cast(sa.Table, Subtask.__table__)
BRIEF_FIELDS = {  # what OCP's task list shows of each subtask: its key -> our column
    "id": "id",
    "name": "name",
    "description": "description",
    "status": "status",
    "operation": "operation",
}


class Rehearsed(Exception):
    """A rehearsed create was rolled back, as asked."""


class Tasks:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def create(
        self,
        cluster_id: int,
        name: str,
        creator: tuple[int, str],
        context: dict[str, Any],
        nodes: Sequence[NodeLike],
        require: frozenset[str],
        *,
        rehearse: bool = False,
    ) -> tuple[Task, Cluster, list[SimpleNamespace]]:
        """Store a task and its DAG in one transaction; the task holds the cluster until it ends.

        Answers the task, its cluster and its subtasks as inserted (the answer needs no read-back).
        rehearse: run every statement, then roll it all back (raises Rehearsed): the controller does so
        at start, so the first real call finds its statements compiled.
        """
        try:
            async with self.db.tx() as s:
                holder = await s.scalar(sa.select(Task).where(Task.holds_cluster == cluster_id))
                if holder is not None:
                    raise ClusterOpsNotAllowed(
                        f"Operation not allowed in cluster {cluster_id}: it is held by task {holder.id} "
                        f"({holder.name}, {holder.status}); wait for it, or cancel it"
                    )
                cluster = await s.get(Cluster, cluster_id)
                if cluster is None:
                    raise NotFound(f"no cluster with id {cluster_id}")
                if cluster.status not in require:
                    raise ClusterOpsNotAllowed(
                        f"Operation not allowed in cluster {cluster_id} ({cluster.name}): it is "
                        f"{cluster.status}, and {name} needs it {' or '.join(sorted(require))}"
                    )
                t0 = now()
                t = Task(
                    name=name,
                    cluster_id=cluster_id,
                    holds_cluster=cluster_id,
                    status=TaskStatus.RUNNING,
                    operation=TaskOperation.EXECUTE,
                    creator_id=creator[0],
                    creator_name=creator[1],
                    context=context,
                    start_time=t0,
                )
                s.add(t)
                await s.flush()
                rows = await self._insert_dag(s, t.id, nodes)
                await s.execute(
                    sa.insert(HistoryEvent),
                    [history(t.id, "task", t.id, None, TaskStatus.RUNNING, t0, f"created by {creator[1]}")],
                )
                if rehearse:
                    raise Rehearsed
                return t, cluster, [SimpleNamespace(**r) for r in rows]
        except sa.exc.IntegrityError as exc:
            raise ClusterOpsNotAllowed(f"cluster {cluster_id} is already held by another task") from exc

    async def _insert_dag(
        self, s: AsyncSession, task_id: int, nodes: Sequence[NodeLike]
    ) -> list[dict[str, Any]]:
        # ids are reserved first, so the DAG goes in with its edges in one set-based insert
        ids = dict(zip((n.node for n in nodes), await self._reserve_ids(s, len(nodes)), strict=True))
        downs: dict[str, list[int]] = {n.node: [] for n in nodes}
        for n in nodes:
            for up in n.upstreams:
                downs[up].append(ids[n.node])
        rows = [
            {
                "id": ids[n.node],
                "task_id": task_id,
                "node": n.node,
                "step": n.step,
                "name": n.name,
                "description": n.description,
                "status": SubtaskStatus.PENDING if n.upstreams else SubtaskStatus.READY,
                "operation": Operation.EXECUTE,
                "parallel_idx": n.parallel_idx,
                "run_time": 0,
                "timeout": n.timeout,
                "waiting": len(n.upstreams),
                "upstreams": [ids[u] for u in n.upstreams],
                "downstreams": downs[n.node],
                "context": n.context,
                "start_time": None,
                "finish_time": None,
                "lease_owner": None,
                "lease_expires": None,
                "result": None,
            }
            for n in nodes
        ]
        await s.execute(sa.insert(cast(sa.Table, Subtask.__table__)), rows)
        return rows

    async def _reserve_ids(self, s: AsyncSession, n: int) -> list[int]:
        if self.db.is_sqlite:  # one writer, and this transaction holds the write lock: the next ids are ours
            top = int(await s.scalar(sa.select(sa.func.coalesce(sa.func.max(Subtask.id), 0))) or 0)
            return list(range(top + 1, top + 1 + n))
        seq = sa.func.nextval(sa.func.pg_get_serial_sequence("subtasks", "id"))
        return [
            int(x) for x in (await s.scalars(sa.select(seq).select_from(sa.func.generate_series(1, n)))).all()
        ]

    async def get(self, task_id: int) -> tuple[Task, list[Subtask]]:
        async with self.db.read() as s:
            t = await s.get(Task, task_id)
            if t is None:
                raise TaskNotFound(f"no task with id {task_id}")
            subs = (
                await s.scalars(sa.select(Subtask).where(Subtask.task_id == task_id).order_by(Subtask.id))
            ).all()
        return t, list(subs)

    async def page(
        self,
        *,
        cluster_id: int | None = None,
        statuses: Sequence[TaskStatus] = (),
        name: str | None = None,
        cluster_name: str | None = None,
        sort: tuple[str, bool] = ("id", False),
        page: int = 1,
        size: int = 20,
    ) -> tuple[list[Task], int, dict[int, bytes]]:
        """OCP's list: repeated status (any of), fuzzy name and cluster name, sort (field, ascending);
        answers a page of tasks, the total, and each task's subtasks in brief, as a JSON array."""
        q = sa.select(Task)
        if cluster_id is not None:
            q = q.where(Task.cluster_id == cluster_id)
        if statuses:
            q = q.where(Task.status.in_(list(statuses)))
        if name:
            q = q.where(sa.func.lower(Task.name).contains(name.lower(), autoescape=True))
        if cluster_name:
            names = sa.select(Cluster.id).where(
                sa.func.lower(Cluster.name).contains(cluster_name.lower(), autoescape=True)
            )
            q = q.where(Task.cluster_id.in_(names.scalar_subquery()))
        field, ascending = sort
        column = SORTABLE[field]
        order = [column.asc() if ascending else column.desc()]
        if field != "id":
            order.append(Task.id.asc() if ascending else Task.id.desc())
        async with self.db.read() as s:
            total = await s.scalar(sa.select(sa.func.count()).select_from(q.subquery())) or 0
            rows = list((await s.scalars(q.order_by(*order).offset((page - 1) * size).limit(size))).all())
            parts: dict[int, list[str]] = {t.id: [] for t in rows}
            if rows:
                # the polled list of a big task is thousands of subtasks: the database writes each one's
                # JSON (in its own thread, off the event loop), and they are only joined here
                found = await s.execute(
                    sa.select(_BRIEF.c.task_id, self._brief_json())
                    .where(_BRIEF.c.task_id.in_(list(parts)))
                    .order_by(_BRIEF.c.id)
                )
                for task_id, one in found.tuples():
                    parts[task_id].append(one)
        return rows, total, {t: ("[" + ",".join(p) + "]").encode() for t, p in parts.items()}

    def _brief_json(self) -> Any:
        """A subtask as OCP's task list shows it under each task, as a JSON object made by the database."""
        fields: list[Any] = []
        for key, col in BRIEF_FIELDS.items():
            fields += [sa.literal_column(f"'{key}'"), _BRIEF.c[col]]
        if self.db.is_sqlite:
            return sa.func.json_object(*fields, type_=sa.String)
        return sa.cast(sa.func.json_build_object(*fields), sa.Text)

    async def status(self, task_id: int) -> TaskStatus:
        async with self.db.tx() as s:
            status = await s.scalar(sa.select(Task.status).where(Task.id == task_id))
        if status is None:
            raise TaskNotFound(f"no task with id {task_id}")
        return TaskStatus(status)

    async def header(self, task_id: int) -> tuple[int, dict[str, Any]]:
        """(cluster id, context) of a task, without its subtasks."""
        async with self.db.tx() as s:
            row = (
                await s.execute(sa.select(Task.cluster_id, Task.context).where(Task.id == task_id))
            ).first()
        if row is None:
            raise TaskNotFound(f"no task with id {task_id}")
        return int(row[0]), dict(row[1])

    async def log(self, task_id: int, subtask_id: int) -> str:
        async with self.db.read() as s:
            sub = await s.get(Subtask, subtask_id)
            if sub is None or sub.task_id != task_id:
                raise TaskNotFound(f"task {task_id} has no subtask {subtask_id}")
            lines = (
                await s.scalars(
                    sa.select(SubtaskLog.line)
                    .where(SubtaskLog.subtask_id == subtask_id)
                    .order_by(SubtaskLog.id)
                )
            ).all()
        return "\n".join(lines) + ("\n" if lines else "")

    async def node_result(self, task_id: int, node: str) -> dict[str, Any] | None:
        """The recorded result of a task's subtask, by its node key (e.g. what a prepare step found)."""
        async with self.db.tx() as s:
            result: dict[str, Any] | None = await s.scalar(
                sa.select(Subtask.result).where(Subtask.task_id == task_id, Subtask.node == node)
            )
        return result

    async def stage_results(self, task_id: int, stage: str) -> dict[str, dict[str, Any] | None]:
        """The results of a stage's subtasks (node keys `stage:i`), by node key."""
        async with self.db.tx() as s:
            rows = await s.execute(
                sa.select(Subtask.node, Subtask.result).where(
                    Subtask.task_id == task_id, Subtask.node.startswith(f"{stage}:", autoescape=True)
                )
            )
            return {str(node): result for node, result in rows.all()}

    async def history(self, task_id: int) -> list[HistoryEvent]:
        async with self.db.tx() as s:
            return list(
                (
                    await s.scalars(
                        sa.select(HistoryEvent)
                        .where(HistoryEvent.task_id == task_id)
                        .order_by(HistoryEvent.id)
                    )
                ).all()
            )

    async def holder(self, cluster_id: int) -> Task | None:
        """The task holding the cluster, if one does (a plan names it; it takes nothing)."""
        async with self.db.tx() as s:
            found: Task | None = await s.scalar(sa.select(Task).where(Task.holds_cluster == cluster_id))
        return found

    async def count_by_status(self) -> dict[str, int]:
        """How many tasks are in each status (the metrics' gauge)."""
        async with self.db.tx() as s:
            rows = await s.execute(sa.select(Task.status, sa.func.count()).group_by(Task.status))
            return {str(status): int(n) for status, n in rows.all()}
