"""The FastAPI application: the trace middleware, the gate (authentication and the body cap, before
anything is read), the routers, and the one place where errors become OCP's envelope (never ad hoc in
routes): every answer that is not a success, 500 included, carries OCP's integer code and HTTP status,
and the OpenAPI document lists each route's error answers with that envelope's schema."""

from __future__ import annotations

import logging

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException as StarletteHTTPException

from obstop.agent.tomlconf import one_line
from obstop.controller.api import audit, clusters, ops, partial, tasks, ui
from obstop.controller.api.deps import Controller
from obstop.controller.api.envelope import JSONResponse, TraceMiddleware, error_response
from obstop.controller.api.gate import Gate, strict_parameters
from obstop.controller.api.openapi import document
from obstop.controller.errors import (
    BadRequest,
    ControllerError,
    PayloadTooLarge,
    StoreUnavailable,
    UnsupportedMediaType,
)
from obstop.controller.metrics import ApiMetrics

log = logging.getLogger("obstop.api")


async def domain_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ControllerError)
    return error_response(request, exc)


async def bad_input(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    parts = []
    for err in exc.errors()[:5]:
        where = ".".join(str(x) for x in err.get("loc", ()) if x != "body") or "body"
        parts.append(f"{where}: {err.get('msg')}")
    return await domain_error(request, BadRequest("invalid request: " + "; ".join(parts)))


async def http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    route = f"{request.method} {request.url.path}"
    error: ControllerError
    match exc.status_code:
        case 404:  # OCP answers an unknown route with 400
            error = BadRequest(f"no such route: {route}")
        case 405:
            error = BadRequest(f"method not allowed: {route}")
        case 413:
            error = PayloadTooLarge(str(exc.detail))
        case 415:
            error = UnsupportedMediaType(str(exc.detail))
        case status if 400 <= status < 500:
            error = BadRequest(str(exc.detail))
        case _:
            error = ControllerError(str(exc.detail))
    return await domain_error(request, error)


async def unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unexpected error answering %s %s", request.method, request.url.path, exc_info=exc)
    trace = getattr(request.state, "trace_id", "?")
    return await domain_error(
        request, ControllerError(f"unexpected error (traceId {trace}); see the controller log")
    )


async def store_unavailable(request: Request, exc: Exception) -> JSONResponse:
    """The store not answering (a PostgreSQL restart, a lost connection): one line in the log, 503."""
    cause = one_line(getattr(exc, "orig", None) or exc)[:200]  # the driver's words, not the SQL
    log.warning("the store did not answer %s %s: %s", request.method, request.url.path, cause)
    trace = getattr(request.state, "trace_id", "?")
    return await domain_error(
        request, StoreUnavailable(f"the store did not answer (traceId {trace}): {cause}; try again")
    )


def create_app(controller: Controller) -> FastAPI:
    app = FastAPI(
        title="obstop",
        version="1",
        summary="OceanBase cluster stop, OCP-compatible API",
        dependencies=[Depends(strict_parameters)],
    )
    app.state.controller = controller
    app.add_middleware(audit.AuditTrail, audit=controller.store.audit)  # inside the gate: knows the caller
    app.add_middleware(
        Gate, auth=controller.auth, refuse_plain_basic=controller.config.api.refuses_plain_basic
    )
    app.add_middleware(TraceMiddleware)  # added last: outermost, so the gate's answers carry a trace id
    if controller.metrics is not None:
        app.add_middleware(ApiMetrics, metrics=controller.metrics)  # outermost: refusals are timed too
    app.add_exception_handler(ControllerError, domain_error)
    app.add_exception_handler(RequestValidationError, bad_input)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(SQLAlchemyError, store_unavailable)
    app.add_exception_handler(ConnectionError, store_unavailable)  # a driver's connect, unwrapped
    app.add_exception_handler(Exception, unexpected)
    for module in (ops, clusters, partial, tasks, audit, ui):
        app.include_router(module.router)
    app.openapi = lambda: document(app)  # type: ignore[method-assign]
    return app
