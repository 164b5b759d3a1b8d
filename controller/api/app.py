"""The OCP-compatible HTTP API. Every answer is in OCP's envelope; domain errors are mapped to it in one
handler, never ad hoc in routes."""

from __future__ import annotations

import socket
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

import orjson
from fastapi import Depends, FastAPI, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import PlainTextResponse, Response
from prometheus_client import CollectorRegistry, Counter, generate_latest
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from obstop.controller import views
from obstop.controller.auth import Authenticator
from obstop.controller.config import ControllerConfig, Role
from obstop.controller.engine.runner import Engine
from obstop.controller.errors import BadRequest, ControllerError
from obstop.controller.states.cluster import STOPPABLE
from obstop.controller.states.task import TaskStatus
from obstop.controller.steps import dag
from obstop.controller.store.core import Store


class StopRequest(BaseModel):
    """Optional body of the stop call (OCP style). Unknown fields are refused."""

    model_config = ConfigDict(extra="forbid", strict=True)

    freeze: bool = Field(default=True, description="minor freeze and checkpoint wait before the kill")
    freezeTimeoutSeconds: int = Field(default=600, ge=1, le=86400)
    force: bool = Field(default=False, description="stop processes even if the cluster answers no SQL")


class JSONResponse(Response):
    """JSON by orjson: a task of thousands of subtasks is encoded several times faster."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


@dataclass
class Controller:
    """What the routes need; owned by the daemon (app.state), never a module global."""

    config: ControllerConfig
    store: Store
    engine: Engine
    auth: Authenticator
    registry: CollectorRegistry
    tasks_created: Counter


@dataclass(frozen=True)
class User:
    id: int
    name: str
    roles: frozenset[Role]


def envelope(
    request: Request, data: Any, status: int = 200, error: dict[str, str] | None = None
) -> JSONResponse:
    started = getattr(request.state, "started", time.monotonic())
    body: dict[str, Any] = {
        "data": data,
        "successful": error is None,
        "timestamp": datetime.now().astimezone().isoformat(timespec="milliseconds"),
        "duration": int((time.monotonic() - started) * 1000),
        "status": status,
        "traceId": getattr(request.state, "trace_id", uuid.uuid4().hex[:16]),
        "server": socket.gethostname(),
    }
    if error is not None:
        body["error"] = error
    return JSONResponse(body, status_code=status)


class TraceMiddleware:
    """A trace id and start time on every request (plain ASGI: no extra task per request)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        trace_id = uuid.uuid4().hex[:16]
        state = scope.setdefault("state", {})
        state["trace_id"], state["started"] = trace_id, time.monotonic()

        async def send_with_trace(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", []).append((b"x-trace-id", trace_id.encode()))
            await send(message)

        await self.app(scope, receive, send_with_trace)


def _ctl(request: Request) -> Controller:
    ctl: Controller = request.app.state.controller
    return ctl


def _user(request: Request) -> User:
    uid, name, roles = _ctl(request).auth.authenticate(request.headers.get("authorization"))
    return User(uid, name, roles)


def _role(role: Role) -> Any:
    def check(request: Request) -> User:
        user = _user(request)
        Authenticator.require(user.roles, role, user.name)
        return user

    return Depends(check)


Id = Annotated[int, Path(ge=1, le=2**62)]


def create_app(controller: Controller) -> FastAPI:
    app = FastAPI(title="obstop", version="1", summary="OceanBase cluster stop, OCP-compatible API")
    app.state.controller = controller

    app.add_middleware(TraceMiddleware)

    @app.exception_handler(ControllerError)
    async def domain_error(request: Request, exc: ControllerError) -> JSONResponse:
        resp = envelope(request, None, exc.status, {"code": exc.code, "message": exc.message})
        if exc.status == 401:
            resp.headers["WWW-Authenticate"] = 'Basic realm="obstop"'
        return resp

    @app.exception_handler(RequestValidationError)
    async def bad_input(request: Request, exc: RequestValidationError) -> JSONResponse:
        parts = []
        for err in exc.errors()[:5]:
            where = ".".join(str(x) for x in err.get("loc", ()) if x != "body") or "body"
            parts.append(f"{where}: {err.get('msg')}")
        return await domain_error(request, BadRequest("invalid request: " + "; ".join(parts)))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        codes = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED"}
        return envelope(
            request,
            None,
            exc.status_code,
            {"code": codes.get(exc.status_code, "HTTP_ERROR"), "message": str(exc.detail)},
        )

    @app.get("/api/status", tags=["ops"])
    async def status(request: Request) -> JSONResponse:
        return envelope(request, {"status": "UP", "controllerId": controller.config.engine.controller_id})

    @app.get("/metrics", tags=["ops"], response_class=PlainTextResponse)
    async def metrics() -> PlainTextResponse:
        return PlainTextResponse(generate_latest(controller.registry).decode())

    @app.get("/api/v2/ob/clusters", tags=["clusters"])
    async def list_clusters(request: Request, user: User = _role(Role.TASK_VIEWER)) -> JSONResponse:
        rows = await controller.store.clusters()
        data = [views.cluster_view(*r) for r in rows]
        return envelope(request, {"contents": data, "page": _page(1, max(len(data), 1), len(data))})

    @app.get("/api/v2/ob/clusters/{id}", tags=["clusters"])
    async def get_cluster(request: Request, id: Id, user: User = _role(Role.TASK_VIEWER)) -> JSONResponse:
        return envelope(request, views.cluster_view(*await controller.store.cluster(id)))

    @app.post("/api/v2/ob/clusters/{id}/stop", tags=["clusters"])
    async def stop_cluster(
        request: Request, id: Id, body: StopRequest | None = None, user: User = _role(Role.CLUSTER_MANAGER)
    ) -> JSONResponse:
        options = body or StopRequest()
        cluster, zones, servers = await controller.store.cluster_shape(id)
        cfg = controller.config
        nodes = dag.build_stop_dag(
            zones,
            servers,
            process_timeout=int(cfg.stop.subtask_timeout),
            prepare_timeout=max(int(cfg.stop.subtask_timeout), options.freezeTimeoutSeconds + 30),
            step_timeout=int(cfg.engine.step_timeout),
        )
        context = dag.task_context(
            cluster.id,
            cluster.name,
            cluster.status,
            [sid for sid, _ in servers],
            zones,
            freeze=str(options.freeze).lower(),
            freeze_timeout_seconds=options.freezeTimeoutSeconds,
            force=str(options.force).lower(),
        )
        task, subtasks = await controller.store.create_task(
            id, dag.TASK_NAME, (user.id, user.name), context, nodes, frozenset(STOPPABLE)
        )
        controller.tasks_created.inc()
        controller.engine.wake()
        return envelope(request, views.task_view(task, cluster, subtasks))

    @app.get("/api/v2/tasks/instances", tags=["tasks"])
    async def list_tasks(
        request: Request,
        user: User = _role(Role.TASK_VIEWER),
        page: Annotated[int, Query(ge=1)] = 1,
        size: Annotated[int, Query(ge=1, le=1000)] = 20,
        clusterId: Annotated[int | None, Query(ge=1)] = None,
        status: TaskStatus | None = None,
    ) -> JSONResponse:
        rows, total = await controller.store.tasks(cluster_id=clusterId, status=status, page=page, size=size)
        names = await controller.store.cluster_rows()
        data = [views.task_view(t, names.get(t.cluster_id), None) for t in rows]
        return envelope(request, {"contents": data, "page": _page(page, size, total)})

    async def task_answer(request: Request, task_id: int) -> JSONResponse:
        # polled by `obstop stop --watch`: name the cluster from its row, never load its servers
        task, subtasks = await controller.store.task(task_id)
        cluster = (await controller.store.cluster_rows()).get(task.cluster_id)
        return envelope(request, views.task_view(task, cluster, subtasks))

    @app.get("/api/v2/tasks/instances/{id}", tags=["tasks"])
    async def get_task(request: Request, id: Id, user: User = _role(Role.TASK_VIEWER)) -> JSONResponse:
        return await task_answer(request, id)

    @app.get("/api/v2/tasks/instances/{id}/subtasks/{sid}/log", tags=["tasks"])
    async def subtask_log(
        request: Request, id: Id, sid: Id, user: User = _role(Role.TASK_VIEWER)
    ) -> JSONResponse:
        return envelope(request, {"log": await controller.store.subtask_log(id, sid)})

    @app.post("/api/v2/tasks/instances/{id}/retry", tags=["tasks"])
    async def retry_task(request: Request, id: Id, user: User = _role(Role.TASK_MANAGER)) -> JSONResponse:
        await controller.store.retry(id)
        controller.engine.wake()
        return await task_answer(request, id)

    @app.post("/api/v2/tasks/instances/{id}/subtasks/{sid}/retry", tags=["tasks"])
    async def retry_subtask(
        request: Request, id: Id, sid: Id, user: User = _role(Role.TASK_MANAGER)
    ) -> JSONResponse:
        await controller.store.retry(id, sid)
        controller.engine.wake()
        _task, subtasks = await controller.store.task(id)
        sub = next(s for s in subtasks if s.id == sid)
        return envelope(request, views.subtask_view(sub))

    return app


def _page(number: int, size: int, total: int) -> dict[str, int]:
    return {
        "number": number,
        "size": size,
        "totalElements": total,
        "totalPages": -(-total // size) if size else 0,
    }
