"""`obstop stop|start` and what the ops commands share: where the API is, who we are, the live view, and
one exit code per kind of failure (obstop/client.py has the table), each failure in one line."""

from __future__ import annotations

import functools
import inspect
import sys
import time
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Concatenate, ParamSpec, TypeVar

import typer
from rich.console import Console
from rich.live import Live

from obstop import render
from obstop.client import EXIT_FAILED, EXIT_OK, Client, ClientError, resolve

P = ParamSpec("P")
R = TypeVar("R")

Url = Annotated[str | None, typer.Option("--url", help="controller API (env OBSTOP_URL)")]
User = Annotated[str | None, typer.Option("--user", help="API user (env OBSTOP_USER; default admin)")]
PwFile = Annotated[
    Path | None, typer.Option("--password-file", help="file with the password (env OBSTOP_PASSWORD_FILE)")
]
Config = Annotated[
    Path | None, typer.Option("--config", help="a controller.toml to find the API (and admin.password)")
]
CaFile = Annotated[
    Path | None,
    typer.Option("--ca-file", help="the CA of the controller's TLS certificate (env OBSTOP_CA_FILE)"),
]
NoFreeze = Annotated[bool, typer.Option("--no-freeze", help="skip the minor freeze")]
FreezeTimeout = Annotated[
    int | None,
    typer.Option("--freeze-timeout", min=1, max=86400, help="seconds the minor freeze may take (600)"),
]
Watch = Annotated[bool, typer.Option("--watch", help="show the DAG live until the task ends")]
Plan = Annotated[
    bool,
    typer.Option(
        "--plan", help="dry run: every check, nothing done; exit 0 if it would run, 1 if something blocks it"
    ),
]


class PlanFormat(StrEnum):
    table = "table"
    json = "json"


class Format(StrEnum):
    table = "table"
    json = "json"
    dot = "dot"
    mermaid = "mermaid"


def client(
    url: str | None, user: str | None, pw: Path | None, config: Path | None, ca_file: Path | None = None
) -> Client:
    return Client(resolve(url, user, pw, config, ca_file))


def guarded(fn: Callable[P, R]) -> Callable[P, R]:
    """Every failure a command meets becomes one line on stderr and its exit code, never a traceback."""

    @functools.wraps(fn)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except ClientError as exc:
            typer.echo(f"error: {exc.message}", err=True)
            sys.exit(exc.exit_code)

    return run


# what every ops command takes to reach the API, in this order after its own parameters
_CONNECTION: tuple[tuple[str, Any], ...] = (
    ("url", Url),
    ("user", User),
    ("password_file", PwFile),
    ("config", Config),
    ("ca_file", CaFile),
)


def connected(fn: Callable[Concatenate[Client, P], R]) -> Callable[..., R]:
    """An ops command whose first parameter is the API client: the command line gets the connection
    options (--url, --user, --password-file, --config, --ca-file) after the command's own, and every
    failure becomes one line and its exit code (`guarded`)."""
    sig = inspect.signature(fn, eval_str=True)
    first, *own = sig.parameters.values()
    extra = [
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=hint)
        for name, hint in _CONNECTION
    ]

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> R:
        where = [kwargs.pop(name, None) for name, _ in _CONNECTION]
        return fn(client(*where), *args, **kwargs)

    # typer reads the parameters from the signature and their types from the annotations
    run.__signature__ = sig.replace(parameters=[*own, *extra])  # type: ignore[attr-defined]
    hints = {k: v for k, v in fn.__annotations__.items() if k != first.name}
    run.__annotations__ = {**hints, **dict(_CONNECTION)}
    return guarded(run)


def failed_logs(c: Client, task: dict[str, Any]) -> dict[int, str]:
    return {s["id"]: c.log(task["id"], s["id"]) for s in task["tasks"] if s["status"] == "FAILED"}


def watch(c: Client, task_id: int, console: Console, interval: float = 0.2) -> dict[str, Any]:
    """Live view until the task is no longer RUNNING; returns the final task."""
    task = c.task(task_id)
    with Live(render.table(task), console=console, refresh_per_second=10, transient=False) as live:
        while task["status"] == "RUNNING":
            time.sleep(interval)  # the API is polled: this is what the operator's terminal shows
            task = c.task(task_id)
            live.update(render.table(task))
        live.update(render.table(task, failed_logs(c, task)))
    return task


def follow(c: Client, task_id: int, watching: bool) -> None:
    """With --watch: exit 0 only when the task ends SUCCESSFUL (1 when it ends FAILED)."""
    if watching:
        task = watch(c, task_id, Console())
        sys.exit(EXIT_OK if task["status"] == "SUCCESSFUL" else EXIT_FAILED)


def planned(data: dict[str, Any], fmt: PlanFormat) -> None:
    """Print a plan; exit 0 when nothing blocks it, 1 when something does."""
    if fmt is PlanFormat.json:
        print(render.as_json(data))
    else:
        Console().print(render.plan(data))
    sys.exit(EXIT_OK if data["executable"] else EXIT_FAILED)


def show(c: Client, task: dict[str, Any], fmt: Format, console: Console) -> None:
    match fmt:
        case Format.json:
            print(render.as_json(task))
        case Format.dot:
            print(render.dot(task))
        case Format.mermaid:
            print(render.mermaid(task))
        case Format.table:
            console.print(render.table(task, failed_logs(c, task)))


def register(app: typer.Typer) -> None:
    from obstop.cli import audit, tasks

    @app.command("stop")
    @connected
    def stop(
        c: Client,
        cluster_id: int,
        watch_: Watch = False,
        no_freeze: NoFreeze = False,
        freeze_timeout: FreezeTimeout = None,
        force: Annotated[
            bool, typer.Option("--force", help="stop processes even if SQL is unreachable")
        ] = False,
        plan: Plan = False,
        format: Annotated[PlanFormat, typer.Option("--format", help="of the plan")] = PlanFormat.table,
    ) -> None:
        """Stop a cluster. With --watch, exit 0 only when the task ends SUCCESSFUL."""
        body: dict[str, Any] = {"freeze": not no_freeze, "force": force}
        if freeze_timeout is not None:
            body["freezeTimeoutSeconds"] = freeze_timeout
        if plan:
            planned(c.stop(cluster_id, body, plan=True), format)
        task = c.stop(cluster_id, body)
        typer.echo(f"task {task['id']} ({task['name']}) {task['status']}")
        follow(c, task["id"], watch_)

    @app.command("start")
    @connected
    def start(
        c: Client,
        cluster_id: int,
        watch_: Watch = False,
        plan: Plan = False,
        format: Annotated[PlanFormat, typer.Option("--format", help="of the plan")] = PlanFormat.table,
    ) -> None:
        """Start a stopped cluster, each observer from its home. With --watch, exit 0 only if SUCCESSFUL.

        Each observer is started as the owner of its home, the way it restarts itself
        (cd HOME && ./bin/observer, from its persisted configuration)."""
        if plan:
            planned(c.start(cluster_id, plan=True), format)
        task = c.start(cluster_id)
        typer.echo(f"task {task['id']} ({task['name']}) {task['status']}")
        follow(c, task["id"], watch_)

    tasks.register(app)
    audit.register(app)
