"""Partial stops, OCP's paths: stop or start one zone, or one server, while the rest of the cluster serves.

Each answers the task at once. A stop's first subtask is the majority check: it fails, naming each tenant
and log stream that would lose its majority, before anything is touched (`force` never skips it).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request
from pydantic import BaseModel, ConfigDict, Field

from obstop.controller.api.deps import MAX_ID, Ctl, Id, User, role
from obstop.controller.api.envelope import JSONResponse
from obstop.controller.api.operate import DryRun, operate
from obstop.controller.config import Role
from obstop.controller.engine.service import DEFAULT_FREEZE_TIMEOUT

router = APIRouter(tags=["partial stops"])

ZoneName = Annotated[str, Path(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")]
ServerId = Annotated[int, Path(ge=1, le=MAX_ID)]


class ZoneStopRequest(BaseModel):
    """Optional body of the zone stop. Unknown fields are refused."""

    model_config = ConfigDict(extra="forbid", strict=True)

    freeze: bool = Field(default=True, description="minor freeze of the zone's servers before the kill")
    freezeTimeoutSeconds: int = Field(default=DEFAULT_FREEZE_TIMEOUT, ge=1, le=86400)
    force: bool = Field(
        default=False, description="FORCE STOP ZONE (no wait for the logs); never skips the majority check"
    )


class ServerStopRequest(BaseModel):
    """Optional body of the server stop (OCP's freezeServer and force). Unknown fields are refused."""

    model_config = ConfigDict(extra="forbid", strict=True)

    freezeServer: bool = Field(default=True, description="minor freeze of the server before the kill")
    freezeTimeoutSeconds: int = Field(default=DEFAULT_FREEZE_TIMEOUT, ge=1, le=86400)
    force: bool = Field(
        default=False, description="FORCE STOP SERVER (no wait for the logs); never skips the majority check"
    )


@router.post("/api/v2/ob/clusters/{id}/zones/{zoneName}/stop")
async def stop_zone(
    request: Request,
    id: Id,
    zoneName: ZoneName,
    ctl: Ctl,
    body: ZoneStopRequest | None = None,
    user: User = role(Role.CLUSTER_MANAGER),
    dryRun: DryRun = False,
) -> JSONResponse:
    """OCP's "Stop OB zone": the majority check, STOP ZONE, its observers; the cluster stays RUNNING."""
    options = body or ZoneStopRequest()
    prepared = await ctl.service.prepare_stop_zone(
        id,
        zoneName,
        freeze=options.freeze,
        freeze_timeout_seconds=options.freezeTimeoutSeconds,
        force=options.force,
    )
    return await operate(request, ctl, prepared, user, dryRun)


@router.post("/api/v2/ob/clusters/{id}/zones/{zoneName}/start")
async def start_zone(
    request: Request,
    id: Id,
    zoneName: ZoneName,
    ctl: Ctl,
    user: User = role(Role.CLUSTER_MANAGER),
    dryRun: DryRun = False,
) -> JSONResponse:
    """OCP's "Start OB zone": the zone's observers, then START ZONE once they answer."""
    return await operate(request, ctl, await ctl.service.prepare_start_zone(id, zoneName), user, dryRun)


@router.post("/api/v2/ob/clusters/{id}/servers/{serverId}/stop")
async def stop_server(
    request: Request,
    id: Id,
    serverId: ServerId,
    ctl: Ctl,
    body: ServerStopRequest | None = None,
    user: User = role(Role.CLUSTER_MANAGER),
    dryRun: DryRun = False,
) -> JSONResponse:
    """OCP's "Stop OB server": the majority check, STOP SERVER, its observer."""
    options = body or ServerStopRequest()
    prepared = await ctl.service.prepare_stop_server(
        id,
        serverId,
        freeze_server=options.freezeServer,
        freeze_timeout_seconds=options.freezeTimeoutSeconds,
        force=options.force,
    )
    return await operate(request, ctl, prepared, user, dryRun)


@router.post("/api/v2/ob/clusters/{id}/servers/{serverId}/start")
async def start_server(
    request: Request,
    id: Id,
    serverId: ServerId,
    ctl: Ctl,
    user: User = role(Role.CLUSTER_MANAGER),
    dryRun: DryRun = False,
) -> JSONResponse:
    """OCP's "Start OB server": its observer, then START SERVER once it answers."""
    return await operate(request, ctl, await ctl.service.prepare_start_server(id, serverId), user, dryRun)
