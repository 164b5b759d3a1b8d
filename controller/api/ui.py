"""The operator's page at /ui/: clusters with their zones and servers, the task list, and one task's DAG
drawn live, with the operations the user's roles allow. Plain HTML, CSS and JavaScript shipped in the
wheel (static/), no CDN. Behind the same gate as the API: a browser asks for the HTTP Basic login, and
the page then calls the API on the same origin with it (so the audit trail names who pressed what)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from obstop.controller.api.deps import User, role
from obstop.controller.api.envelope import JSONResponse, envelope
from obstop.controller.auth import implied
from obstop.controller.config import Role
from obstop.controller.errors import BadRequest

STATIC = Path(__file__).parent / "static"
TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8", ".css": "text/css"}
# the page's own files only, read once: a name from the URL never reaches the file system
FILES: dict[str, tuple[bytes, str]] = {
    p.name: (p.read_bytes(), TYPES[p.suffix]) for p in sorted(STATIC.iterdir()) if p.suffix in TYPES
}
HEADERS = {
    "Cache-Control": "no-cache",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
}

router = APIRouter(tags=["ui"], include_in_schema=False)


def _file(name: str) -> Response:
    found = FILES.get(name)
    if found is None:
        raise BadRequest(f"no such file of the page: {name[:64]!r}")
    body, media = found
    return Response(body, media_type=media, headers=HEADERS)


@router.get("/ui")
async def ui_root(user: User = role(Role.TASK_VIEWER)) -> RedirectResponse:
    return RedirectResponse("/ui/")


@router.get("/ui/")
async def ui_page(user: User = role(Role.TASK_VIEWER)) -> Response:
    return _file("index.html")


@router.get("/ui/static/{name}")
async def ui_static(name: str, user: User = role(Role.TASK_VIEWER)) -> Response:
    return _file(name)


@router.get("/ui/me")
async def ui_me(request: Request, user: User = role(Role.TASK_VIEWER)) -> JSONResponse:
    """Who the page's user is, and every role they hold (implied ones too): which buttons it shows."""
    data: dict[str, Any] = {"name": user.name, "roles": sorted(str(r) for r in implied(user.roles))}
    return envelope(request, data)
