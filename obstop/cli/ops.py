"""`obstop stop` and `obstop task show|retry`: the ops client of the controller's API."""

from __future__ import annotations

import sys
import time
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.live import Live

from obstop import render
from obstop.client import ApiError, Client, resolve

Url = Annotated[str | None, typer.Option("--url", help="controller API (env OBSTOP_URL)")]
User = Annotated[str | None, typer.Option("--user", help="API user (env OBSTOP_USER; default admin)")]
PwFile = Annotated[
    Path | None, typer.Option("--password-file", help="file with the password (env OBSTOP_PASSWORD_FILE)")
]
Config = Annotated[
    Path | None, typer.Option("--config", help="a controller.toml to find the API (and admin.password)")
]


class Format(StrEnum):
    table = "table"
    json = "json"
    dot = "dot"
    mermaid = "mermaid"


def _client(url: str | None, user: str | None, pw: Path | None, config: Path | None) -> Client:
    return Client(resolve(url, user, pw, config))


def _failed_logs(client: Client, task: dict[str, Any]) -> dict[int, str]:
    return {s["id"]: client.log(task["id"], s["id"]) for s in task["tasks"] if s["status"] == "FAILED"}


def watch(client: Client, task_id: int, console: Console, interval: float = 0.2) -> dict[str, Any]:
    """Live view until the task is no longer RUNNING; returns the final task."""
    task = client.task(task_id)
    with Live(render.table(task), console=console, refresh_per_second=10, transient=False) as live:
        while task["status"] == "RUNNING":
            time.sleep(interval)  # the API is polled: this is what the operator's terminal shows
            task = client.task(task_id)
            live.update(render.table(task))
        live.update(render.table(task, _failed_logs(client, task)))
    return task


def show(client: Client, task: dict[str, Any], fmt: Format, console: Console) -> None:
    match fmt:
        case Format.json:
            print(render.as_json(task))
        case Format.dot:
            print(render.dot(task))
        case Format.mermaid:
            print(render.mermaid(task))
        case Format.table:
            console.print(render.table(task, _failed_logs(client, task)))


def register(app: typer.Typer) -> None:
    task_app = typer.Typer(help="Show or act on tasks.", no_args_is_help=True)
    app.add_typer(task_app, name="task")

    def fail(exc: ApiError) -> None:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2 if exc.status in (0, 400, 401, 403, 404) else 1)

    @app.command("stop")
    def stop(
        cluster_id: int,
        watch_: Annotated[bool, typer.Option("--watch", help="show the DAG live until done")] = False,
        no_freeze: Annotated[bool, typer.Option("--no-freeze", help="skip the minor freeze")] = False,
        force: Annotated[
            bool, typer.Option("--force", help="stop processes even if SQL is unreachable")
        ] = False,
        url: Url = None,
        user: User = None,
        password_file: PwFile = None,
        config: Config = None,
    ) -> None:
        """Stop a cluster. With --watch, exit 0 only when the task ends SUCCESSFUL."""
        client = _client(url, user, password_file, config)
        body = {"freeze": not no_freeze, "force": force}
        try:
            task = client.stop(cluster_id, body)
            typer.echo(f"task {task['id']} ({task['name']}) {task['status']}")
            if watch_:
                task = watch(client, task["id"], Console())
                sys.exit(0 if task["status"] == "SUCCESSFUL" else 1)
        except ApiError as exc:
            fail(exc)

    @task_app.command("show")
    def task_show(
        task_id: int,
        watch_: Annotated[bool, typer.Option("--watch")] = False,
        format: Annotated[Format, typer.Option("--format")] = Format.table,
        url: Url = None,
        user: User = None,
        password_file: PwFile = None,
        config: Config = None,
    ) -> None:
        """Show a task's DAG: a table (live with --watch), or json, dot, mermaid."""
        client = _client(url, user, password_file, config)
        try:
            if watch_ and format is Format.table:
                task = watch(client, task_id, Console())
            else:
                task = client.task(task_id)
                show(client, task, format, Console())
        except ApiError as exc:
            fail(exc)

    @task_app.command("retry")
    def task_retry(
        task_id: int,
        watch_: Annotated[bool, typer.Option("--watch")] = False,
        url: Url = None,
        user: User = None,
        password_file: PwFile = None,
        config: Config = None,
    ) -> None:
        """Retry every FAILED subtask of a task (successful ones are not run again)."""
        client = _client(url, user, password_file, config)
        try:
            task = client.retry(task_id)
            typer.echo(f"task {task['id']} {task['status']}")
            if watch_:
                task = watch(client, task_id, Console())
                sys.exit(0 if task["status"] == "SUCCESSFUL" else 1)
        except ApiError as exc:
            fail(exc)
