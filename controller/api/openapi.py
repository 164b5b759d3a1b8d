"""The OpenAPI document, with the error answers the API really gives.

FastAPI documents a 422 that this API never sends (bad input is OCP's 400) and none of the rest. Here each
operation lists, with the envelope's schema and OCP's codes, what its route can answer: 400 and 500
always; 401, 403, 413 and 429 behind the gate; 404 when its path names an id; 409 when it changes
something. A route may declare more with FastAPI's `responses=`: those are kept.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from obstop.controller.api.envelope import ErrorEnvelope
from obstop.controller.api.gate import PUBLIC, READS
from obstop.controller.errors import (
    BadCredentials,
    BadRequest,
    ClusterOpsNotAllowed,
    Conflict,
    ControllerError,
    Forbidden,
    NotFound,
    PayloadTooLarge,
    TaskNotFound,
    TaskStateInvalid,
    TooManyAttempts,
    Unauthorized,
    ZoneNotFound,
)

REF = "#/components/schemas/ErrorEnvelope"


def answers(path: str, method: str) -> dict[int, list[type[ControllerError]]]:
    """The error statuses an operation can answer, each with the errors (OCP codes) behind it. Every route
    behind the gate states a role (`role(...)`), so it may answer 401, 403 and 429."""
    tasks = path.startswith("/api/v2/tasks")
    changes = method.upper() not in READS
    out: dict[int, list[type[ControllerError]]] = {400: [BadRequest], 500: [ControllerError]}
    if changes and tasks:
        out[400].append(TaskStateInvalid)
    if path not in PUBLIC:
        out[401] = [Unauthorized, BadCredentials]
        out[403] = [Forbidden]
        out[413] = [PayloadTooLarge]
        out[429] = [TooManyAttempts]
    if "{" in path:
        out[404] = [TaskNotFound] if tasks else [NotFound]
        if "{zoneName}" in path:
            out[404].append(ZoneNotFound)
    if changes:
        out[409] = [ClusterOpsNotAllowed, Conflict]
    return dict(sorted(out.items()))


def _description(errors: list[type[ControllerError]]) -> str:
    return "; ".join(f"{e.name} ({e.code})" for e in errors)


def document(app: FastAPI) -> dict[str, Any]:
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(
        title=app.title,
        version=app.version,
        summary=app.summary,
        description=app.description,
        routes=app.routes,
    )
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    envelope = ErrorEnvelope.model_json_schema(ref_template="#/components/schemas/{model}")
    components.update(envelope.pop("$defs", {}))
    components["ErrorEnvelope"] = envelope
    for name in ("HTTPValidationError", "ValidationError"):
        components.pop(name, None)
    for path, operations in schema.get("paths", {}).items():
        for method, operation in operations.items():
            responses = operation.setdefault("responses", {})
            responses.pop("422", None)
            for status, errors in answers(path, method).items():
                responses.setdefault(
                    str(status),
                    {
                        "description": _description(errors),
                        "content": {"application/json": {"schema": {"$ref": REF}}},
                    },
                )
    app.openapi_schema = schema
    return schema
