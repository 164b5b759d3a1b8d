"""What an operator does to a task: each a compare-and-set through the subtask and task machines, with
its history, in one transaction. The engine then runs whatever became READY."""

from __future__ import annotations

import sqlalchemy as sa

from obstop.controller.errors import TaskNotFound, TaskStateInvalid
from obstop.controller.states.subtask import RETRY, Operation
from obstop.controller.states.task import RESUME, TaskStatus
from obstop.controller.store.db import Database
from obstop.controller.store.models import HistoryEvent, Subtask, Task, history, now


class Operations:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def retry(self, task_id: int, subtask_id: int | None = None) -> list[int]:
        """FAILED subtasks (all, or the one named) -> READY with operation RETRY; the task runs again."""
        frm, to = RETRY
        t0 = now()
        async with self.db.tx() as s:
            task = await s.get(Task, task_id)
            if task is None:
                raise TaskNotFound(f"no task with id {task_id}")
            q = sa.select(Subtask.id).where(Subtask.task_id == task_id, Subtask.status == frm)
            if subtask_id is not None:
                sub = await s.get(Subtask, subtask_id)
                if sub is None or sub.task_id != task_id:
                    raise TaskNotFound(f"task {task_id} has no subtask {subtask_id}")
                if sub.status != frm:
                    raise TaskStateInvalid(
                        f"subtask {subtask_id} ({sub.name}) is {sub.status}: only a FAILED one can be retried"
                    )
                q = q.where(Subtask.id == subtask_id)
            elif task.status != TaskStatus.FAILED:
                raise TaskStateInvalid(f"task {task_id} is {task.status}: only a FAILED task can be retried")
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
            old = TaskStatus(task.status)
            if old != TaskStatus.RUNNING:
                t_frm, t_to = RESUME
                await s.execute(
                    sa.update(Task)
                    .where(Task.id == task_id, Task.status == t_frm)
                    .values(status=t_to, finish_time=None)
                )
                events.append(history(task_id, "task", task_id, t_frm, t_to, t0, "retry"))
            if events:
                await s.execute(sa.insert(HistoryEvent), events)
        return ids
