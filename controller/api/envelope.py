"""OCP's envelope around every answer (its schema, for the OpenAPI document), a trace id on every request,
and JSON by orjson."""

from __future__ import annotations

import socket
import time
import uuid
from datetime import datetime
from typing import Any, Literal

import orjson
import structlog
from fastapi import Request
from fastapi.responses import Response
from pydantic import BaseModel, Field
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from obstop.controller.errors import ControllerError, TooManyAttempts


class JSONResponse(Response):
    """JSON by orjson: a task of thousands of subtasks is encoded several times faster."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def envelope(
    request: Request, data: Any, status: int = 200, error: dict[str, Any] | None = None
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


def error_response(request: Request, exc: ControllerError) -> JSONResponse:
    """The envelope of an error, with the headers its status calls for."""
    resp = envelope(request, None, exc.status, {"code": exc.code, "message": exc.message})
    if exc.status == 401:
        resp.headers["WWW-Authenticate"] = 'Basic realm="obstop"'
    if isinstance(exc, TooManyAttempts):
        resp.headers["Retry-After"] = str(exc.retry_after)
    return resp


class ErrorDetail(BaseModel):
    code: int = Field(description="OCP's error code (e.g. 10001, 20000, 30000)")
    message: str


class ErrorEnvelope(BaseModel):
    """What every error answer is: OCP's envelope with `error` and no data."""

    data: None = None
    successful: Literal[False] = False
    timestamp: str = Field(description="ISO-8601 with offset")
    duration: int = Field(description="milliseconds")
    status: int = Field(description="the HTTP status, repeated")
    traceId: str
    server: str
    error: ErrorDetail


class TraceMiddleware:
    """A trace id and start time on every request (plain ASGI: no extra task per request), bound to the
    logs written while it is answered."""

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

        # every log line written while answering carries the request's trace id (obstop/logs.py)
        with structlog.contextvars.bound_contextvars(traceId=trace_id):
            await self.app(scope, receive, send_with_trace)
