"""Tasks: list, read, log, and the operations on them."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request

from obstop.controller import views
from obstop.controller.api.deps import MAX_ID, Ctl, Id, User, role
from obstop.controller.api.envelope import JSONResponse, envelope
from obstop.controller.config import Role
from obstop.controller.errors import TaskNotFound
from obstop.controller.states.task import TaskStatus

router = APIRouter(tags=["tasks"])


async def _task_answer(request: Request, ctl: Ctl, task_id: int) -> JSONResponse:
    # polled by `obstop stop --watch`: names the cluster from its row, never loads its servers
    task, cluster, subtasks = await ctl.service.task(task_id)
    return envelope(request, views.task_view(task, cluster, subtasks))


@router.get("/api/v2/tasks/instances")
async def list_tasks(
    request: Request,
    ctl: Ctl,
    user: User = role(Role.TASK_VIEWER),
    page: Annotated[int, Query(ge=1, le=MAX_ID // 1000)] = 1,
    size: Annotated[int, Query(ge=1, le=1000)] = 20,
    clusterId: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
    status: TaskStatus | None = None,
) -> JSONResponse:
    rows, total = await ctl.store.tasks.page(cluster_id=clusterId, status=status, page=page, size=size)
    names = await ctl.store.clusters.rows()
    data = [views.task_view(t, names.get(t.cluster_id), None) for t in rows]
    return envelope(request, {"contents": data, "page": views.page(page, size, total)})


@router.get("/api/v2/tasks/instances/{id}")
async def get_task(request: Request, id: Id, ctl: Ctl, user: User = role(Role.TASK_VIEWER)) -> JSONResponse:
    return await _task_answer(request, ctl, id)


@router.get("/api/v2/tasks/instances/{id}/subtasks/{sid}/log")
async def subtask_log(
    request: Request, id: Id, sid: Id, ctl: Ctl, user: User = role(Role.TASK_VIEWER)
) -> JSONResponse:
    return envelope(request, {"log": await ctl.store.tasks.log(id, sid)})


@router.post("/api/v2/tasks/instances/{id}/retry")
async def retry_task(
    request: Request, id: Id, ctl: Ctl, user: User = role(Role.TASK_MANAGER)
) -> JSONResponse:
    await ctl.service.retry(id)
    return await _task_answer(request, ctl, id)


@router.post("/api/v2/tasks/instances/{id}/subtasks/{sid}/retry")
async def retry_subtask(
    request: Request, id: Id, sid: Id, ctl: Ctl, user: User = role(Role.TASK_MANAGER)
) -> JSONResponse:
    await ctl.service.retry(id, sid)
    _task, _cluster, subtasks = await ctl.service.task(id)
    sub = next((s for s in subtasks if s.id == sid), None)
    if sub is None:
        raise TaskNotFound(f"task {id} has no subtask {sid}")
    return envelope(request, views.subtask_view(sub))
