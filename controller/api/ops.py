"""Liveness (no auth) and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse
from prometheus_client import generate_latest

from obstop.controller.api.deps import Ctl
from obstop.controller.api.envelope import JSONResponse, envelope

router = APIRouter(tags=["ops"])


@router.get("/api/status")
async def status(request: Request, ctl: Ctl) -> JSONResponse:
    return envelope(request, {"status": "UP", "controllerId": ctl.config.engine.controller_id})


@router.get("/metrics", response_class=PlainTextResponse)
async def metrics(ctl: Ctl) -> PlainTextResponse:
    if ctl.metrics is not None:
        ctl.metrics.set_tasks(await ctl.store.tasks.count_by_status())
    return PlainTextResponse(generate_latest(ctl.registry).decode())
