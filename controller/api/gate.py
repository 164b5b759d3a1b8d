"""The API's gate, before anything is read: who asks, and how much they send.

FastAPI reads a request's body before it runs a route's dependencies, so authentication and the body cap
live here, in plain ASGI middleware: a request without valid credentials is answered 401 (or 429) without
its body being read, and an authenticated one may send at most MAX_BODY bytes (413 beyond, counted as
they arrive, whatever Content-Length says). The caller found here is what routes' `role(...)` checks.

After routing, `strict_parameters` (a dependency of every route) refuses, on calls that change something,
any query parameter or body field the route does not declare: a mistyped or unsupported option
(`?dryrun=true`) is a 400, never silently ignored.
"""

from __future__ import annotations

import types
from typing import Any, Union, get_args, get_origin

from fastapi import Request
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from pydantic import BaseModel
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from obstop.controller.api.envelope import error_response
from obstop.controller.auth import Authenticator
from obstop.controller.errors import BadRequest, ControllerError, InsecureTransport, PayloadTooLarge

MAX_BODY = 64 * 1024  # the stop body is under 100 bytes
PUBLIC = frozenset({"/api/status", "/metrics", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"})
READS = frozenset({"GET", "HEAD", "OPTIONS"})


class Gate:
    def __init__(
        self, app: ASGIApp, auth: Authenticator, max_body: int = MAX_BODY, refuse_plain_basic: bool = False
    ) -> None:
        self.app = app
        self.auth = auth
        self.max_body = max_body
        self.refuse_plain_basic = refuse_plain_basic  # [api]: no TLS, a listener that is not loopback

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            if scope["path"] not in PUBLIC:
                if self.refuse_plain_basic and scope.get("scheme") == "http":
                    raise InsecureTransport(
                        "HTTP Basic over plain HTTP is refused on a listener that is not loopback: set [api] "
                        "tls_cert and tls_key (https), or allow_basic_over_http behind a TLS proxy"
                    )
                headers = dict(scope["headers"])
                authorization = headers.get(b"authorization", b"").decode("latin-1") or None
                client = scope.get("client") or ("?", 0)
                scope.setdefault("state", {})["caller"] = await self.auth.login(authorization, client[0])
            body = await self._body(scope, receive)
        except ControllerError as exc:
            await error_response(Request(scope), exc)(scope, receive, send)
            return
        await self.app(scope, _replay(body, receive), send)

    async def _body(self, scope: Scope, receive: Receive) -> bytes:
        """The whole body, read only up to the cap."""
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > self.max_body:
                raise PayloadTooLarge(f"request body over {self.max_body} bytes")
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                raise PayloadTooLarge(f"request body over {self.max_body} bytes")
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()  # after the body: the client's disconnect, when it comes

    return replay


_declared: dict[int, tuple[frozenset[str], list[Any]]] = {}


def _walk(dependant: Dependant) -> list[Dependant]:
    return [dependant, *(d for sub in dependant.dependencies for d in _walk(sub))]


def _route_params(route: APIRoute) -> tuple[frozenset[str], list[Any]]:
    """The query parameters and body parameters a route declares (its dependencies' too)."""
    found = _declared.get(id(route))
    if found is None:
        every = _walk(route.dependant)
        queries = frozenset(p.alias for d in every for p in d.query_params)
        found = (queries, [p for d in every for p in d.body_params])
        _declared[id(route)] = found
    return found


def _model_of(annotation: Any) -> type[BaseModel] | None:
    """The model of a body parameter, `Model` or `Model | None`."""
    if get_origin(annotation) in (Union, types.UnionType):
        found = [m for a in get_args(annotation) if (m := _model_of(a)) is not None]
        return found[0] if len(found) == 1 else None
    return annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None


async def strict_parameters(request: Request) -> None:
    """On a call that changes something: no query parameter, and no body field, the route does not declare."""
    route = request.scope.get("route")
    if request.method in READS or not isinstance(route, APIRoute):
        return
    queries, bodies = _route_params(route)
    unknown = sorted(set(request.query_params) - queries)
    where = f"{request.method} {request.url.path}"
    if unknown:
        raise BadRequest(f"unknown query parameter(s) {', '.join(unknown)} for {where}")
    raw = await request.body()
    if not bodies:
        if raw.strip():
            raise BadRequest(f"{where} takes no request body")
        return
    model = _model_of(bodies[0].field_info.annotation) if len(bodies) == 1 else None
    if model is None or not raw.strip():
        return  # the route's own validation has the last word
    try:
        fields = await request.json()  # parsed (and refused when malformed) by FastAPI already
    except (ValueError, RecursionError):
        return
    if isinstance(fields, dict):
        known = {f.alias or name for name, f in model.model_fields.items()} | set(model.model_fields)
        extra = sorted(str(k) for k in fields if k not in known)
        if extra:
            raise BadRequest(f"unknown field(s) {', '.join(extra)} in the body of {where}")
