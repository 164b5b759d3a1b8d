"""Clusters: read them, stop one, start one."""

from __future__ import annotations

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from obstop.controller import views
from obstop.controller.api.deps import Ctl, Id, User, role
from obstop.controller.api.envelope import JSONResponse, envelope
from obstop.controller.api.operate import DryRun, operate
from obstop.controller.config import Role
from obstop.controller.engine.service import DEFAULT_FREEZE_TIMEOUT

router = APIRouter(tags=["clusters"])


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
    """OCP's "Stop OB cluster": the freeze, then every observer, proved, stopped and its ports free."""
    options = body or StopRequest()
    prepared = await ctl.service.prepare_stop_cluster(
        id,
        freeze=options.freeze,
        freeze_timeout_seconds=options.freezeTimeoutSeconds,
        force=options.force,
    )
    return await operate(request, ctl, prepared, user, dryRun)


@router.post("/api/v2/ob/clusters/{id}/start")
async def start_cluster(
    request: Request, id: Id, ctl: Ctl, user: User = role(Role.CLUSTER_MANAGER), dryRun: DryRun = False
) -> JSONResponse:
    """OCP's "Start OB cluster": every observer started from its home as it restarts itself."""
    return await operate(request, ctl, await ctl.service.prepare_start_cluster(id), user, dryRun)
