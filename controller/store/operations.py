"""What an operator does to a task (OCP's rules, OCP_TASKS.md): retry, roll back, skip, cancel. Each is a
compare-and-set through the subtask and task machines, with its history, in one transaction; the engine
then runs whatever became READY (or interrupts what became CANCELING).

A task holds its cluster while it runs and releases it when it ends; an operation that makes a FAILED
task run again takes the cluster back, or is refused (50002) when another task holds it meanwhile.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from obstop.controller.errors import ClusterOpsNotAllowed, ProhibitRollback, TaskNotFound, TaskStateInvalid
from obstop.controller.states.subtask import (
    BACKWARD,
    CANCEL,
    RETRY,
    SKIP,
    Operation,
    SubtaskStatus,
)
from obstop.controller.states.task import RESUME, TaskOperation, TaskStatus
from obstop.controller.store.db import Database, rows
from obstop.controller.store.finish import promote_rollback
from obstop.controller.store.models import HistoryEvent, Subtask, Task, history, now


def prohibits_rollback(context: dict[str, Any]) -> bool:
    """OCP: the task's context says prohibit_rollback=true, or a started subtask's context does."""
    value = context.get("stringMap", {}).get("prohibit_rollback", context.get("prohibit_rollback"))
    return str(value).lower() == "true"


class Operations:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def _run(self, work: Any) -> Any:
        try:
            async with self.db.tx() as s:
                return await work(s)
        except sa.exc.IntegrityError as exc:  # another task took the cluster between our check and write
            raise ClusterOpsNotAllowed("the cluster is held by another task") from exc

    async def retry(self, task_id: int, subtask_id: int | None = None) -> list[int]:
        """FAILED subtasks (all, or the one named) -> READY with operation RETRY; the task runs again."""

        async def work(s: AsyncSession) -> list[int]:
            task = await _task(s, task_id)
            frm, to = RETRY
            if task.operation == TaskOperation.ROLLBACK:
                raise TaskStateInvalid(
                    f"task {task_id} ({task.name}) is being rolled back: roll it back again, or skip, "
                    "rather than retry"
                )
            q = sa.select(Subtask.id).where(Subtask.task_id == task_id, Subtask.status == frm)
            if subtask_id is not None:
                sub = await _subtask(s, task_id, subtask_id)
                if sub.status != frm:
                    raise TaskStateInvalid(
                        f"subtask {subtask_id} ({sub.name}) is {sub.status}: only a FAILED one can be retried"
                    )
                q = q.where(Subtask.id == subtask_id)
            elif task.status != TaskStatus.FAILED:
                raise TaskStateInvalid(f"task {task_id} is {task.status}: only a FAILED task can be retried")
            t0 = now()
            ids = list(
                (
                    await s.scalars(
                        sa.update(Subtask)
                        .where(Subtask.id.in_(q.scalar_subquery()), Subtask.status == frm)
                        .values(status=to, operation=Operation.RETRY)
                        .returning(Subtask.id)
                    )
                ).all()
            )
            events = [history(task_id, "subtask", sid, frm, to, t0, "retry", sid) for sid in ids]
            events += await _resume(s, task, TaskOperation.RETRY, "retry", t0)
            await _history(s, events)
            return ids

        found: list[int] = await self._run(work)
        return found

    async def rollback(self, task_id: int) -> list[int]:
        """Roll a FAILED task back: every subtask that ran gets operation ROLLBACK, and those whose
        downstreams are all PENDING (or that have none) become READY; answers their ids."""

        async def work(s: AsyncSession) -> list[int]:
            task = await _task(s, task_id)
            if task.status != TaskStatus.FAILED:
                raise TaskStateInvalid(
                    f"This operation is not supported for the {task_id} task in the {task.status} state: "
                    "only a FAILED task can be rolled back"
                )
            rows = (
                await s.execute(
                    sa.select(
                        Subtask.id, Subtask.status, Subtask.downstreams, Subtask.context, Subtask.name
                    ).where(Subtask.task_id == task_id)
                )
            ).all()
            started = [r for r in rows if r.status != SubtaskStatus.PENDING]
            blocker = next((r for r in started if prohibits_rollback(r.context)), None)
            if prohibits_rollback(task.context) or blocker is not None:
                why = f": subtask {blocker.id} ({blocker.name}) prohibits it" if blocker else ""
                raise ProhibitRollback(f"Task {task_id} can not rollback{why}")
            status = {r.id: r.status for r in rows}
            # how many downstreams each must see back to PENDING before it is rolled back
            waiting: dict[int, int] = {
                r.id: sum(1 for d in r.downstreams if status.get(d) != SubtaskStatus.PENDING) for r in started
            }
            t0 = now()
            table = cast(sa.Table, Subtask.__table__)
            if waiting:
                await s.execute(
                    sa.update(table)
                    .where(table.c.id == sa.bindparam("sid"))
                    .values(waiting=sa.bindparam("n"), operation=Operation.ROLLBACK),
                    [{"sid": sid, "n": n} for sid, n in waiting.items()],
                )
            events = await _resume(s, task, TaskOperation.ROLLBACK, "roll back", t0)
            promoted, promote_events = await promote_rollback(s, [i for i, n in waiting.items() if n == 0])
            await _history(s, events + promote_events)
            return [sid for sid, _ in promoted]

        found: list[int] = await self._run(work)
        return found

    async def skip(self, task_id: int, subtask_id: int) -> None:
        """A FAILED subtask -> READY with SKIP (ROLLBACK_SKIP while rolling back): the engine completes it
        without running it, and the task goes on."""

        async def work(s: AsyncSession) -> None:
            task = await _task(s, task_id)
            sub = await _subtask(s, task_id, subtask_id)
            frm, to = SKIP
            if sub.status != frm:
                raise TaskStateInvalid(
                    f"subtask {subtask_id} ({sub.name}) is {sub.status}: only a FAILED one can be skipped"
                )
            backward = sub.operation in BACKWARD or task.operation == TaskOperation.ROLLBACK
            op = Operation.ROLLBACK_SKIP if backward else Operation.SKIP
            t0 = now()
            await s.execute(
                sa.update(Subtask)
                .where(Subtask.id == subtask_id, Subtask.status == frm)
                .values(status=to, operation=op)
            )
            events = [history(task_id, "subtask", subtask_id, frm, to, t0, op.lower(), subtask_id)]
            events += await _resume(s, task, None, "skip", t0)
            await _history(s, events)

        await self._run(work)

    async def cancel(self, task_id: int, subtask_id: int) -> None:
        """A RUNNING subtask -> CANCELING; the engine running it interrupts it; it ends FAILED (CANCEL)."""

        async def work(s: AsyncSession) -> None:
            await _task(s, task_id)
            sub = await _subtask(s, task_id, subtask_id)
            frm, to = CANCEL
            if sub.status != frm:
                raise TaskStateInvalid(
                    f"subtask {subtask_id} ({sub.name}) is {sub.status}: only a RUNNING one can be cancelled"
                )
            done = await s.execute(
                sa.update(Subtask).where(Subtask.id == subtask_id, Subtask.status == frm).values(status=to)
            )
            if rows(done) != 1:
                raise TaskStateInvalid(f"subtask {subtask_id} ({sub.name}) ended meanwhile")
            await _history(s, [history(task_id, "subtask", subtask_id, frm, to, now(), "cancel", subtask_id)])

        await self._run(work)


async def _task(s: AsyncSession, task_id: int) -> Task:
    task = await s.get(Task, task_id)
    if task is None:
        raise TaskNotFound(f"no task with id {task_id}")
    return task


async def _subtask(s: AsyncSession, task_id: int, subtask_id: int) -> Subtask:
    sub = await s.get(Subtask, subtask_id)
    if sub is None or sub.task_id != task_id:
        raise TaskNotFound(f"task {task_id} has no subtask {subtask_id}")
    return sub


async def _resume(
    s: AsyncSession, task: Task, operation: TaskOperation | None, why: str, t0: datetime
) -> list[dict[str, Any]]:
    """A FAILED task runs again (taking its cluster back); a RUNNING one only changes its operation."""
    values: dict[str, Any] = {} if operation is None else {"operation": operation}
    if task.status == TaskStatus.RUNNING:
        if values:
            await s.execute(sa.update(Task).where(Task.id == task.id).values(**values))
        return []
    holder = await s.scalar(sa.select(Task).where(Task.holds_cluster == task.cluster_id, Task.id != task.id))
    if holder is not None:
        raise ClusterOpsNotAllowed(
            f"Operation not allowed in cluster {task.cluster_id}: it is held by task {holder.id} "
            f"({holder.name}, {holder.status})"
        )
    frm, to = RESUME
    done = await s.execute(
        sa.update(Task)
        .where(Task.id == task.id, Task.status == frm)
        .values(status=to, finish_time=None, holds_cluster=task.cluster_id, **values)
    )
    if rows(done) != 1:
        raise TaskStateInvalid(f"task {task.id} changed meanwhile; try again")
    return [history(task.id, "task", task.id, frm, to, t0, why)]


async def _history(s: AsyncSession, events: Sequence[dict[str, Any]]) -> None:
    if events:
        await s.execute(sa.insert(HistoryEvent), list(events))
