"""`obstop task list|show|log|retry|rollback|skip|cancel`: OCP's task operations from the command line."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any

import typer
from rich.console import Console

from obstop import render
from obstop.cli.ops import Format, Watch, connected, follow, show, watch
from obstop.client import Client


class ListFormat(StrEnum):
    table = "table"
    json = "json"


class Status(StrEnum):
    RUNNING = "RUNNING"
    FAILED = "FAILED"
    SUCCESSFUL = "SUCCESSFUL"


def _target(sub: dict[str, Any]) -> str:
    found = render.target_of(sub)
    return f" ({found})" if found else ""


def register(app: typer.Typer) -> None:
    task_app = typer.Typer(
        help="List, show and operate on tasks (OCP's task operations).", no_args_is_help=True
    )
    app.add_typer(task_app, name="task")

    @task_app.command("list")
    @connected
    def task_list(
        c: Client,
        status: Annotated[
            list[Status] | None, typer.Option("--status", help="any of these (repeat it)")
        ] = None,
        name: Annotated[str | None, typer.Option("--name", help="task name contains (any case)")] = None,
        cluster_id: Annotated[int | None, typer.Option("--cluster-id", min=1)] = None,
        cluster_name: Annotated[
            str | None, typer.Option("--cluster-name", help="cluster name contains")
        ] = None,
        sort: Annotated[
            str, typer.Option("--sort", help="FIELD,asc|desc (id, name, status, startTime...)")
        ] = ("id,desc"),
        page: Annotated[int, typer.Option("--page", min=1)] = 1,
        size: Annotated[int, typer.Option("--size", min=1, max=2000)] = 20,
        format: Annotated[ListFormat, typer.Option("--format")] = ListFormat.table,
    ) -> None:
        """List tasks, newest first, with OCP's filters."""
        params: list[tuple[str, str | int]] = [("page", page), ("size", size), ("sort", sort)]
        params += [("status", s.value) for s in status or []]
        for key, value in (("name", name), ("clusterId", cluster_id), ("clusterName", cluster_name)):
            if value is not None:
                params.append((key, value))
        data = c.tasks(params)
        if format is ListFormat.json:
            print(render.as_json(data))
        else:
            Console().print(render.task_list(data))

    @task_app.command("show")
    @connected
    def task_show(
        c: Client,
        task_id: int,
        watch_: Watch = False,
        format: Annotated[Format, typer.Option("--format")] = Format.table,
    ) -> None:
        """Show a task's DAG: a table (live with --watch), or json, dot, mermaid."""
        if watch_ and format is Format.table:
            watch(c, task_id, Console())
        else:
            show(c, c.task(task_id), format, Console())

    @task_app.command("log")
    @connected
    def task_log(
        c: Client,
        task_id: int,
        subtask_id: Annotated[
            int | None, typer.Argument(help="one subtask (default: every one that ran)")
        ] = None,
        failed: Annotated[bool, typer.Option("--failed", help="only the FAILED subtasks")] = False,
    ) -> None:
        """Print subtask logs (each run opens with its operation: EXECUTE, RETRY, ROLLBACK...)."""
        if subtask_id is not None:
            print(c.log(task_id, subtask_id), end="")
            return
        task = c.task(task_id)
        for sub in task["tasks"]:
            if sub.get("runTime", 0) == 0 or (failed and sub["status"] != "FAILED"):
                continue
            print(f"--- subtask {sub['id']}: {sub['name']}{_target(sub)} · {sub['status']} ---")
            print(c.log(task_id, sub["id"]), end="")

    @task_app.command("retry")
    @connected
    def task_retry(
        c: Client,
        task_id: int,
        subtask: Annotated[
            int | None, typer.Option("--subtask", help="retry only this FAILED subtask")
        ] = None,
        watch_: Watch = False,
    ) -> None:
        """Retry every FAILED subtask of a FAILED task (successful ones are not run again), or one."""
        c.retry(task_id, subtask)
        _said(c, task_id, f"retrying {'subtask ' + str(subtask) if subtask else 'its FAILED subtasks'}")
        follow(c, task_id, watch_)

    @task_app.command("rollback")
    @connected
    def task_rollback(
        c: Client,
        task_id: int,
        watch_: Watch = False,
    ) -> None:
        """Roll a FAILED task back: its DAG undone backwards, statuses back to what they were.

        Observers this task stopped are started again; ones it started are stopped again."""
        c.rollback(task_id)
        _said(c, task_id, "rolling back")
        follow(c, task_id, watch_)

    @task_app.command("skip")
    @connected
    def task_skip(
        c: Client,
        task_id: int,
        subtask_id: int,
        watch_: Watch = False,
    ) -> None:
        """Mark a FAILED subtask done without running it; the task goes on."""
        c.skip(task_id, subtask_id)
        _said(c, task_id, f"subtask {subtask_id} skipped")
        follow(c, task_id, watch_)

    @task_app.command("cancel")
    @connected
    def task_cancel(
        c: Client,
        task_id: int,
        subtask_id: int,
        watch_: Watch = False,
    ) -> None:
        """Cancel a RUNNING subtask: it ends FAILED, and its command is cancelled where it runs.

        The agent journals the cancel first, stops waiting, and never signals for it after that."""
        c.cancel(task_id, subtask_id)
        _said(c, task_id, f"subtask {subtask_id} cancelling")
        follow(c, task_id, watch_)


def _said(c: Client, task_id: int, what: str) -> None:
    task = c.task(task_id)
    typer.echo(f"task {task_id} ({task['name']}): {what}; {task['status']}")
