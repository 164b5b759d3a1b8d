"""`obstop zone stop|start CLUSTER ZONE` and `obstop server stop|start CLUSTER SERVER`: partial stops, only
when every log stream keeps its majority (the task's first subtask checks it, and says which tenant would
lose it). Exit codes as for `obstop stop` (obstop/client.py)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from obstop.cli.ops import (
    FreezeTimeout,
    NoFreeze,
    Plan,
    PlanFormat,
    Watch,
    connected,
    follow,
    planned,
)
from obstop.client import Client, ClientError

Force = Annotated[
    bool,
    typer.Option("--force", help="FORCE STOP (no wait for the logs); the majority check is never skipped"),
]


def server_id(c: Client, cluster_id: int, server: str) -> int:
    """A server by its id, or by IP or IP:RPC_PORT as the cluster lists it."""
    if server.isdigit():
        return int(server)
    ip, _, port = server.partition(":")
    found = [
        s
        for z in c.cluster(cluster_id)["zones"]
        for s in z["servers"]
        if s["ip"] == ip and (not port or str(s["svrPort"]) == port)
    ]
    if len(found) != 1:
        many = ", ".join(f"{s['id']} ({s['ip']}:{s['svrPort']})" for s in found)
        raise ClientError(
            f"cluster {cluster_id} has {'servers ' + many + ' at' if found else 'no server'} {server}"
            + ("; name one by its id or IP:RPC_PORT" if found else "")
        )
    return int(found[0]["id"])


def _stop_body(no_freeze: bool, freeze_timeout: int | None, force: bool, freeze_key: str) -> dict[str, Any]:
    body: dict[str, Any] = {freeze_key: not no_freeze, "force": force}
    if freeze_timeout is not None:
        body["freezeTimeoutSeconds"] = freeze_timeout
    return body


Format = Annotated[PlanFormat, typer.Option("--format", help="of the plan")]


def _said(c: Client, answer: dict[str, Any], watching: bool, plan: bool, fmt: PlanFormat) -> None:
    """The task (followed with --watch), or with --plan the plan (exit 0 if it would run, 1 if blocked)."""
    if plan:
        planned(answer, fmt)
        return
    typer.echo(f"task {answer['id']} ({answer['name']}) {answer['status']}")
    follow(c, answer["id"], watching)


def register(app: typer.Typer) -> None:
    zone_app = typer.Typer(
        help="Stop or start one zone while the rest of the cluster serves.", no_args_is_help=True
    )
    server_app = typer.Typer(
        help="Stop or start one server while the rest of the cluster serves.", no_args_is_help=True
    )
    app.add_typer(zone_app, name="zone")
    app.add_typer(server_app, name="server")

    @zone_app.command("stop")
    @connected
    def zone_stop(
        c: Client,
        cluster_id: int,
        zone: str,
        watch_: Watch = False,
        plan: Plan = False,
        format: Format = PlanFormat.table,
        no_freeze: NoFreeze = False,
        freeze_timeout: FreezeTimeout = None,
        force: Force = False,
    ) -> None:
        """Stop a zone: the majority check, STOP ZONE, then its observers. With --watch, exit 0 only when the
        task ends SUCCESSFUL."""
        body = _stop_body(no_freeze, freeze_timeout, force, "freeze")
        _said(c, c.zone("stop", cluster_id, zone, body, plan), watch_, plan, format)

    @zone_app.command("start")
    @connected
    def zone_start(
        c: Client,
        cluster_id: int,
        zone: str,
        watch_: Watch = False,
        plan: Plan = False,
        format: Format = PlanFormat.table,
    ) -> None:
        """Start a zone: its observers, then START ZONE once they answer."""
        _said(c, c.zone("start", cluster_id, zone, plan=plan), watch_, plan, format)

    @server_app.command("stop")
    @connected
    def server_stop(
        c: Client,
        cluster_id: int,
        server: Annotated[str, typer.Argument(help="the server's id, or IP[:RPC_PORT]")],
        watch_: Watch = False,
        plan: Plan = False,
        format: Format = PlanFormat.table,
        no_freeze: NoFreeze = False,
        freeze_timeout: FreezeTimeout = None,
        force: Force = False,
    ) -> None:
        """Stop a server: the majority check, STOP SERVER, then its observer."""
        body = _stop_body(no_freeze, freeze_timeout, force, "freezeServer")
        _said(
            c,
            c.server("stop", cluster_id, server_id(c, cluster_id, server), body, plan),
            watch_,
            plan,
            format,
        )

    @server_app.command("start")
    @connected
    def server_start(
        c: Client,
        cluster_id: int,
        server: Annotated[str, typer.Argument(help="the server's id, or IP[:RPC_PORT]")],
        watch_: Watch = False,
        plan: Plan = False,
        format: Format = PlanFormat.table,
    ) -> None:
        """Start a server: its observer, then START SERVER once it answers."""
        _said(
            c,
            c.server("start", cluster_id, server_id(c, cluster_id, server), plan=plan),
            watch_,
            plan,
            format,
        )
