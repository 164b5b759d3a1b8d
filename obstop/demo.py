"""`obstop demo`: the whole system on one machine with nothing installed but obstop.

An embedded MQTT broker (amqtt, in this process), fake hosts with an agent process each, the controller
on SQLite in a temp dir; a stop through the HTTP API shown live, then a start that brings every observer
back. Everything started is cleaned up, on Ctrl-C too. Exit 0 when both tasks end SUCCESSFUL with every
observer as they say (stopped and its ports free; then running again and listening).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import signal
import tempfile
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.live import Live
from rich.table import Table

from obstop import render
from obstop.agent.mqtt_session import parse_url
from obstop.controller import daemon
from obstop.controller.config import load_config
from obstop.fakes import hosts as fakehosts
from obstop.fakes.net import bindable, free_block, free_port


async def _start_broker(port: int) -> Any:
    from amqtt.broker import Broker

    for name in ("amqtt", "transitions"):
        logging.getLogger(name).setLevel(logging.ERROR)
    broker = Broker(
        {
            "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{port}"}},
            "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
        }
    )
    await broker.start()
    return broker


async def run_demo(zones: int, servers_per_zone: int, keep: bool, console: Console) -> int:
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping.set)
    work = Path(tempfile.mkdtemp(prefix="obstop-demo-"))
    broker_url = f"mqtt://127.0.0.1:{free_port()}"
    broker = None
    try:
        console.rule("[bold]obstop demo")
        broker = await _start_broker(parse_url(broker_url).port)
        console.print(f"embedded MQTT broker (amqtt) on {broker_url}")
        n = zones * servers_per_zone
        fleet = await asyncio.to_thread(
            fakehosts.up,
            work,
            zones=zones,
            servers_per_zone=servers_per_zone,
            broker=broker_url,
            first_ip=free_block(n),
        )
        console.print(f"{n} fake hosts in {work}/hosts, each with a fake observer and an agent:")
        for h in fleet.hosts:
            console.print(
                f"  {h.host}  {h.zone}  {h.ip}:2881/2882  observer {h.observer_pid}  agent {h.agent_pid}"
            )
        config = load_config(work / "controller.toml")
        ready, done = asyncio.Event(), asyncio.Event()
        result = 1
        async with asyncio.TaskGroup() as tg:
            controller = tg.create_task(daemon.run(config, done, ready), name="controller")
            try:
                await _first(ready.wait(), controller)
                console.print(f"controller on {fleet.api_url} (SQLite in {work}/state)\n")
                result = await _stop_and_watch(
                    fleet.api_url, (work / "admin.password").read_text().strip(), fleet, stopping, console
                )
            finally:
                done.set()
        return result
    finally:
        with contextlib.suppress(Exception):
            await asyncio.to_thread(fakehosts.down, work)
        if broker is not None:
            with contextlib.suppress(Exception):
                await broker.shutdown()
        if keep:
            console.print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


async def _first(ready: Coroutine[Any, Any, Any], controller: asyncio.Task[None]) -> None:
    """Until the controller is ready, or has ended (its error is then raised)."""
    waiting = asyncio.ensure_future(ready)
    try:
        await asyncio.wait({waiting, controller}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiting.cancel()
    if controller.done():
        controller.result()
        raise RuntimeError("the controller ended before it was ready")


async def _stop_and_watch(
    url: str, password: str, fleet: fakehosts.Fleet, stopping: asyncio.Event, console: Console
) -> int:
    """Stop the cluster, then start it again; 0 when both tasks end SUCCESSFUL."""
    async with httpx.AsyncClient(base_url=url, auth=("admin", password), timeout=30) as http:
        for verb in ("stop", "start"):
            result = await _run_and_watch(http, verb, fleet, stopping, console)
            if result != 0:
                return result
    return 0


async def _run_and_watch(
    http: httpx.AsyncClient, verb: str, fleet: fakehosts.Fleet, stopping: asyncio.Event, console: Console
) -> int:
    started = time.monotonic()
    console.print(f"POST /api/v2/ob/clusters/1/{verb}")
    r = await http.post(f"/api/v2/ob/clusters/1/{verb}")
    body = r.json()
    if not body.get("successful"):
        console.print(f"[red]{verb} refused: {body.get('error')}")
        return 1
    answered = time.monotonic() - started
    task_id = body["data"]["id"]
    console.print(f"answered in {answered * 1000:.0f} ms: task {task_id} {body['data']['status']}\n")
    task = body["data"]
    with Live(render.table(task), console=console, refresh_per_second=20) as live:
        while task["status"] == "RUNNING" and not stopping.is_set():
            await asyncio.sleep(0.1)  # polling the API, as an operator's terminal does
            task = (await http.get(f"/api/v2/tasks/instances/{task_id}")).json()["data"]
            live.update(render.table(task))
        failed = {}
        for s in task["tasks"]:
            if s["status"] == "FAILED":
                log = (await http.get(f"/api/v2/tasks/instances/{task_id}/subtasks/{s['id']}/log")).json()
                failed[s["id"]] = log["data"]["log"]
        live.update(render.table(task, failed))
    elapsed = time.monotonic() - started
    if stopping.is_set() and task["status"] == "RUNNING":
        console.print("[yellow]interrupted; cleaning up")
        return 130
    cluster = (await http.get("/api/v2/ob/clusters/1")).json()["data"]
    console.print()
    ok = _summary(verb, task, cluster, fleet, elapsed, console)
    console.print()
    return 0 if task["status"] == "SUCCESSFUL" and ok else 1


def _summary(
    verb: str,
    task: dict[str, Any],
    cluster: dict[str, Any],
    fleet: fakehosts.Fleet,
    elapsed: float,
    console: Console,
) -> bool:
    """A table of what each host really has now; True when it is what the task says."""
    import psutil

    t = Table(title=f"after the {verb}", title_justify="left")
    for col in ("host", "zone", "observer pid", "process", "ports 2881/2882", "status"):
        t.add_column(col)
    statuses = {s["hostName"]: s["status"] for z in cluster["zones"] for s in z["servers"]}
    wanted_up = verb == "start"
    all_right = True
    for h in fleet.hosts:
        pid_file = Path(h.home) / "run" / "observer.pid"
        try:
            pid = int(pid_file.read_text().strip()) if wanted_up else h.observer_pid
        except (OSError, ValueError):
            pid = 0
        try:
            up = pid > 0 and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            up = False
        held = not any(bindable(h.ip, p) for p in (2881, 2882))
        free = all(bindable(h.ip, p) for p in (2881, 2882))
        right = (up and held) if wanted_up else (not up and free)
        all_right = all_right and right
        mark = "" if right else "[red]"
        t.add_row(
            h.host,
            h.zone,
            str(pid or "-"),
            mark + ("running" if up else "gone"),
            mark + ("listening" if held else "free" if free else "partly held"),
            statuses.get(h.host, "?"),
        )
    console.print(t)
    color = "green" if task["status"] == "SUCCESSFUL" and all_right else "red"
    did = "back and listening" if wanted_up else "stopped"
    console.print(
        f"[{color}]task {task['id']} {task['name']} {task['status']}[/] · cluster {cluster['name']} "
        f"{cluster['status']} · {len(fleet.hosts)} observers {did} in {elapsed:.2f} s"
    )
    return all_right
