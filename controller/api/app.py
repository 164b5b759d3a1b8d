"""The FastAPI application: the routers, the trace middleware, and the one place where errors become
OCP's envelope (never ad hoc in routes)."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from obstop.controller.api import clusters, ops, tasks
from obstop.controller.api.deps import Controller
from obstop.controller.api.envelope import JSONResponse, TraceMiddleware, envelope
from obstop.controller.errors import BadRequest, ControllerError


async def domain_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ControllerError)
    resp = envelope(request, None, exc.status, {"code": exc.code, "message": exc.message})
    if exc.status == 401:
        resp.headers["WWW-Authenticate"] = 'Basic realm="obstop"'
    return resp


async def bad_input(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    parts = []
    for err in exc.errors()[:5]:
        where = ".".join(str(x) for x in err.get("loc", ()) if x != "body") or "body"
        parts.append(f"{where}: {err.get('msg')}")
    return await domain_error(request, BadRequest("invalid request: " + "; ".join(parts)))


async def http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    codes = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED"}
    error = {"code": codes.get(exc.status_code, "HTTP_ERROR"), "message": str(exc.detail)}
    return envelope(request, None, exc.status_code, error)


def create_app(controller: Controller) -> FastAPI:
    app = FastAPI(title="obstop", version="1", summary="OceanBase cluster stop, OCP-compatible API")
    app.state.controller = controller
    app.add_middleware(TraceMiddleware)
    app.add_exception_handler(ControllerError, domain_error)
    app.add_exception_handler(RequestValidationError, bad_input)
    app.add_exception_handler(StarletteHTTPException, http_error)
    for module in (ops, clusters, tasks):
        app.include_router(module.router)
    return app
