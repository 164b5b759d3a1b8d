"""The audit trail: recorded in one place for every call that changes something, read back by
`GET /api/v2/audit` (TASK_VIEWER) and `obstop audit`.

`AuditTrail` is ASGI middleware inside the gate: every POST, PUT, PATCH and DELETE under /api/ by an
authenticated caller (a plan, `?dryRun=true`, included) is written to the store with user, client
address, time, method, path, query, body (bounded), traceId and the answer's status, before that answer
leaves. New routes are covered without a line here. A call refused at the gate (no or bad credentials)
is not: it changed nothing and named no one, and a flood of them must not fill the store.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from obstop.controller import views
from obstop.controller.api.deps import Ctl, User, role
from obstop.controller.api.envelope import JSONResponse, envelope
from obstop.controller.api.gate import READS
from obstop.controller.auth import Caller
from obstop.controller.config import Role
from obstop.controller.store.audit import MAX_BODY, Audit, AuditEntry, Call
from obstop.controller.store.db import store_cause, store_failure

log = logging.getLogger("obstop.audit")
router = APIRouter(tags=["audit"])


class AuditTrail:
    def __init__(self, app: ASGIApp, audit: Audit) -> None:
        self.app = app
        self.audit = audit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        caller: Caller | None = scope.get("state", {}).get("caller")
        if (
            scope["type"] != "http"
            or scope["method"] in READS
            or not scope["path"].startswith("/api/")
            or caller is None
        ):
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        while True:  # the gate has read it whole (capped) and hands it over in one message
            message = await receive()
            chunks.append(message.get("body", b""))
            if message["type"] != "http.request" or not message.get("more_body", False):
                break
        body = b"".join(chunks)
        recorded = False
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # after the body: the client's disconnect, when it comes

        text = body[: MAX_BODY + 1].decode("utf-8", errors="replace")

        async def record(status: int) -> None:
            nonlocal recorded
            recorded = True
            state = scope.get("state", {})
            client = scope.get("client") or ("?", 0)
            call = Call(
                user=caller.name,
                client=str(client[0]),
                method=scope["method"],
                path=scope["path"],
                query=scope.get("query_string", b"").decode("latin-1"),
                body=text,
                trace_id=str(state.get("trace_id", "")),
                status=status,
            )
            log.info("%s %s by %s from %s -> %d", call.method, call.path, call.user, call.client, status)
            try:
                await self.audit.record(call)
            except Exception as exc:  # the operation has happened: its answer still goes out, loudly logged
                what = f"could not record {call.method} {call.path} by {call.user} in the audit trail"
                if store_failure(exc):
                    log.error("%s: the store did not answer: %s", what, store_cause(exc))
                else:
                    log.exception("%s", what)

        async def send_recorded(message: Message) -> None:
            if message["type"] == "http.response.start" and not recorded:
                await record(int(message["status"]))
            await send(message)

        try:
            await self.app(scope, replay, send_recorded)
        finally:
            if not recorded:  # an unexpected error, answered outside this middleware
                await record(500)


def entry_view(e: AuditEntry) -> dict[str, Any]:
    return {
        "id": e.id,
        "time": views.iso(e.at),
        "user": e.user_name,
        "client": e.client,
        "method": e.method,
        "path": e.path,
        "query": e.query,
        "body": e.body,
        "traceId": e.trace_id,
        "status": e.status,
    }


@router.get("/api/v2/audit")
async def audit_trail(
    request: Request,
    ctl: Ctl,
    user: User = role(Role.TASK_VIEWER),
    page: Annotated[int, Query(ge=1, le=2**31, description="1-based")] = 1,
    size: Annotated[int, Query(ge=1, le=2000)] = 20,
    userName: Annotated[str | None, Query(max_length=128, description="only this user's calls")] = None,
    path: Annotated[str | None, Query(max_length=256, description="the path contains this")] = None,
) -> JSONResponse:
    """Every call that changed something, newest first."""
    rows, total = await ctl.store.audit.page(page, size, userName, path)
    return envelope(
        request, {"contents": [entry_view(e) for e in rows], "page": views.page(page, size, total)}
    )
