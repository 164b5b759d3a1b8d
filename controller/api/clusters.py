"""Clusters: read them, stop one, start one."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from obstop.controller import views
from obstop.controller.api.deps import Ctl, Id, User, role
from obstop.controller.api.envelope import JSONResponse, envelope
from obstop.controller.config import Role
from obstop.controller.engine.service import DEFAULT_FREEZE_TIMEOUT

router = APIRouter(tags=["clusters"])

DryRun = Annotated[
    bool,
    Query(
        description="the plan: the DAG and every check (agents, identities, SQL, statuses, the lock), "
        "nothing done, no task created; answers what would happen to each server and what blocks it"
    ),
]


class StopRequest(BaseModel):
    """Optional body of the stop call (OCP style). Unknown fields are refused."""

    model_config = ConfigDict(extra="forbid", strict=True)

    freeze: bool = Field(default=True, description="minor freeze and checkpoint wait before the kill")
    freezeTimeoutSeconds: int = Field(default=DEFAULT_FREEZE_TIMEOUT, ge=1, le=86400)
    force: bool = Field(default=False, description="stop processes even if the cluster answers no SQL")


@router.get("/api/v2/ob/clusters")
async def list_clusters(request: Request, ctl: Ctl, user: User = role(Role.TASK_VIEWER)) -> JSONResponse:
    data = [views.cluster_view(*r) for r in await ctl.store.clusters.all()]
    return envelope(request, {"contents": data, "page": views.page(1, max(len(data), 1), len(data))})


@router.get("/api/v2/ob/clusters/{id}")
async def get_cluster(
    request: Request, id: Id, ctl: Ctl, user: User = role(Role.TASK_VIEWER)
) -> JSONResponse:
    return envelope(request, views.cluster_view(*await ctl.store.clusters.get(id)))


@router.post("/api/v2/ob/clusters/{id}/stop")
async def stop_cluster(
    request: Request,
    id: Id,
    ctl: Ctl,
    body: StopRequest | None = None,
    user: User = role(Role.CLUSTER_MANAGER),
    dryRun: DryRun = False,
) -> JSONResponse:
    options = body or StopRequest()
    if dryRun:
        plan = await ctl.service.plan_stop(
            id,
            freeze=options.freeze,
            freeze_timeout_seconds=options.freezeTimeoutSeconds,
            force=options.force,
        )
        return envelope(request, plan)
    created = await ctl.service.stop_cluster(
        id,
        user.creator,
        freeze=options.freeze,
        freeze_timeout_seconds=options.freezeTimeoutSeconds,
        force=options.force,
    )
    return envelope(request, views.task_view(created.task, created.cluster, created.subtasks))


@router.post("/api/v2/ob/clusters/{id}/start")
async def start_cluster(
    request: Request, id: Id, ctl: Ctl, user: User = role(Role.CLUSTER_MANAGER), dryRun: DryRun = False
) -> JSONResponse:
    """OCP's "Start OB cluster": every observer started from its home as it restarts itself."""
    if dryRun:
        return envelope(request, await ctl.service.plan_start(id))
    created = await ctl.service.start_cluster(id, user.creator)
    return envelope(request, views.task_view(created.task, created.cluster, created.subtasks))
