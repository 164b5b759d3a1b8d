"""Tasks: list (with OCP's filters), read, log, and the operations on them (OCP's paths and rules)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request

from obstop.controller import views
from obstop.controller.api.deps import MAX_ID, Ctl, Id, User, role
from obstop.controller.api.envelope import JSONResponse, envelope
from obstop.controller.config import Role
from obstop.controller.errors import BadRequest, TaskNotFound
from obstop.controller.states.task import TaskStatus

router = APIRouter(tags=["tasks"])

MAX_PAGE = 2**31  # bounded like every integer we take: never past what the database can hold
SORT_FIELDS = ("id", "name", "status", "startTime", "finishTime")
TASK_TYPES = ("MANUAL", "SCHEDULED", "SYS_SCHEDULED")


async def _task_answer(request: Request, ctl: Ctl, task_id: int) -> JSONResponse:
    # polled by `obstop stop --watch`: names the cluster from its row, never loads its servers
    task, cluster, subtasks = await ctl.service.task(task_id)
    return envelope(request, views.task_view(task, cluster, subtasks))


def _sort(value: str) -> tuple[str, bool]:
    field, _, direction = value.partition(",")
    direction = direction.strip().lower() or "asc"
    if field.strip() not in SORT_FIELDS or direction not in ("asc", "desc"):
        raise BadRequest(
            f"invalid request: sort: expected FIELD[,asc|desc] with FIELD one of {', '.join(SORT_FIELDS)}, "
            f"not {value!r}"
        )
    return field.strip(), direction == "asc"


@router.get("/api/v2/tasks/instances")
async def list_tasks(
    request: Request,
    ctl: Ctl,
    user: User = role(Role.TASK_VIEWER),
    page: Annotated[int, Query(ge=1, le=MAX_PAGE, description="1-based")] = 1,
    size: Annotated[int, Query(ge=1, le=2000)] = 20,
    clusterId: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
    status: Annotated[list[TaskStatus] | None, Query(description="repeatable: any of these")] = None,
    name: Annotated[str | None, Query(max_length=256, description="fuzzy: contains, any case")] = None,
    clusterName: Annotated[str | None, Query(max_length=256, description="fuzzy")] = None,
    type: Annotated[str | None, Query(pattern="^(MANUAL|SCHEDULED|SYS_SCHEDULED)$")] = None,
    tenantId: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
    hostId: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
    sort: Annotated[
        str, Query(max_length=64, description="FIELD,asc|desc (id, name, status, startTime...)")
    ] = ("id,desc"),
) -> JSONResponse:
    order = _sort(sort)
    if (type is not None and type != "MANUAL") or tenantId is not None or hostId is not None:
        # every obstop task is MANUAL (an operator's), of a cluster: none has a tenant or host
        return envelope(request, {"contents": [], "page": views.page(page, size, 0)})
    rows, total, subtasks = await ctl.store.tasks.page(
        cluster_id=clusterId,
        statuses=status or (),
        name=name,
        cluster_name=clusterName,
        sort=order,
        page=page,
        size=size,
    )
    names = await ctl.store.clusters.rows()
    data = [views.task_view(t, names.get(t.cluster_id), None, subtasks.get(t.id, b"[]")) for t in rows]
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
    """Retry every FAILED subtask (FAILED task, not rolled back); answers the task."""
    await ctl.service.retry(id)
    return await _task_answer(request, ctl, id)


@router.post("/api/v2/tasks/instances/{id}/rollback")
async def rollback_task(
    request: Request, id: Id, ctl: Ctl, user: User = role(Role.TASK_MANAGER)
) -> JSONResponse:
    """Roll a FAILED task back: its DAG walked backwards, each subtask undone; no data (OCP)."""
    await ctl.service.rollback(id)
    return envelope(request, None)


@router.post("/api/v2/tasks/instances/{id}/subtasks/{sid}/retry")
async def retry_subtask(
    request: Request, id: Id, sid: Id, ctl: Ctl, user: User = role(Role.TASK_MANAGER)
) -> JSONResponse:
    """Retry one FAILED subtask; answers the subtask."""
    await ctl.service.retry(id, sid)
    _task, _cluster, subtasks = await ctl.service.task(id)
    sub = next((s for s in subtasks if s.id == sid), None)
    if sub is None:
        raise TaskNotFound(f"task {id} has no subtask {sid}")
    return envelope(request, views.subtask_view(sub))


@router.post("/api/v2/tasks/instances/{id}/subtasks/{sid}/skip")
async def skip_subtask(
    request: Request, id: Id, sid: Id, ctl: Ctl, user: User = role(Role.TASK_MANAGER)
) -> JSONResponse:
    """Mark a FAILED subtask done without running it (SKIP; ROLLBACK_SKIP while rolling back); no data."""
    await ctl.service.skip(id, sid)
    return envelope(request, None)


@router.post("/api/v2/tasks/instances/{id}/subtasks/{sid}/cancel")
async def cancel_subtask(
    request: Request, id: Id, sid: Id, ctl: Ctl, user: User = role(Role.TASK_MANAGER)
) -> JSONResponse:
    """Cancel a RUNNING subtask: CANCELING, then FAILED with operation CANCEL; no data."""
    await ctl.service.cancel(id, sid)
    return envelope(request, None)
