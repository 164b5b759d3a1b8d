"""`obstop audit`: the audit trail, newest first (who changed what, from where, when, and the answer)."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import typer
from rich.console import Console

from obstop import render
from obstop.cli.ops import connected
from obstop.client import Client


class AuditFormat(StrEnum):
    table = "table"
    json = "json"


def register(app: typer.Typer) -> None:
    @app.command("audit")
    @connected
    def audit(
        c: Client,
        page: Annotated[int, typer.Option("--page", min=1)] = 1,
        size: Annotated[int, typer.Option("--size", min=1, max=2000)] = 20,
        by: Annotated[str | None, typer.Option("--by", help="only this user's calls")] = None,
        path: Annotated[str | None, typer.Option("--path", help="the path contains this")] = None,
        format: Annotated[AuditFormat, typer.Option("--format")] = AuditFormat.table,
    ) -> None:
        """Every call that changed something (stop, start, plan, retry, rollback, skip, cancel...)."""
        params: list[tuple[str, str | int]] = [("page", page), ("size", size)]
        if by is not None:
            params.append(("userName", by))
        if path is not None:
            params.append(("path", path))
        data = c.audit(params)
        if format is AuditFormat.json:
            print(render.as_json(data))
        else:
            Console().print(render.audit(data))
