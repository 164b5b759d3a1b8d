"""`obstop demo`: the whole system on one machine with nothing installed but obstop.

An embedded MQTT broker (amqtt, in this process), fake hosts with an agent process each, the controller
on SQLite in a temp dir; a stop through the HTTP API shown live, then a start that brings every observer
back. Everything started is cleaned up, on Ctrl-C too. Exit 0 when both tasks end SUCCESSFUL with every
observer as they say (stopped and its ports free; then running again and listening).

With `zone_stop`, a partial stop instead: one zone stopped while the cluster stays RUNNING, a second zone
refused by the majority check (the tenant named, nothing touched), then the first zone started again.
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


async def run_demo(
    zones: int,
    servers_per_zone: int,
    keep: bool,
    console: Console,
    zone_stop: bool = False,
    first_ip: str | None = None,
) -> int:
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
            first_ip=first_ip or free_block(n),
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
                password = (work / "admin.password").read_text().strip()
                run = _zone_stop_and_watch if zone_stop else _stop_and_watch
                result = await run(fleet.api_url, password, fleet, stopping, console)
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
    task, elapsed = await _watch(http, f"/api/v2/ob/clusters/1/{verb}", stopping, console)
    if task is None:
        return 130 if stopping.is_set() else 1
    cluster = (await http.get("/api/v2/ob/clusters/1")).json()["data"]
    up = verb == "start"
    did = f"{len(fleet.hosts)} observers " + ("back and listening" if up else "stopped")
    wanted = {h.host: up for h in fleet.hosts}
    ok = _summary(f"after the {verb}", task, cluster, fleet, elapsed, console, wanted, did)
    console.print()
    return 0 if task["status"] == "SUCCESSFUL" and ok else 1


async def _watch(
    http: httpx.AsyncClient, path: str, stopping: asyncio.Event, console: Console
) -> tuple[dict[str, Any] | None, float]:
    """POST the operation and show its DAG live until it ends; (the task, seconds), or None when it was
    refused or interrupted."""
    started = time.monotonic()
    console.print(f"POST {path}")
    r = await http.post(path)
    body = r.json()
    if not body.get("successful"):
        console.print(f"[red]refused: {body.get('error')}")
        return None, 0.0
    answered = time.monotonic() - started
    task_id = body["data"]["id"]
    console.print(f"answered in {answered * 1000:.0f} ms: task {task_id} {body['data']['status']}\n")
    task = body["data"]
    with Live(render.table(task), console=console, refresh_per_second=20) as live:
        while task["status"] == "RUNNING" and not stopping.is_set():
            await asyncio.sleep(0.1)  # polling the API, as an operator's terminal does
            task = (await http.get(f"/api/v2/tasks/instances/{task_id}")).json()["data"]
            live.update(render.table(task))
        live.update(render.table(task, await _failed_logs(http, task)))
    if stopping.is_set() and task["status"] == "RUNNING":
        console.print("[yellow]interrupted; cleaning up")
        return None, 0.0
    console.print()
    return task, time.monotonic() - started


async def _failed_logs(http: httpx.AsyncClient, task: dict[str, Any]) -> dict[int, str]:
    failed = {}
    for s in task["tasks"]:
        if s["status"] == "FAILED":
            log = (await http.get(f"/api/v2/tasks/instances/{task['id']}/subtasks/{s['id']}/log")).json()
            failed[s["id"]] = log["data"]["log"]
    return failed


async def _zone_stop_and_watch(
    url: str, password: str, fleet: fakehosts.Fleet, stopping: asyncio.Event, console: Console
) -> int:
    """Stop the first zone (the cluster stays RUNNING), see the second refused by the majority check with
    nothing touched, start the first again; 0 when all three went as they must."""
    zones = sorted({h.zone for h in fleet.hosts})
    first, second = zones[0], zones[1]
    # the refused stop is meant to fail: its reason is shown below, not as an engine warning too
    logging.getLogger("obstop.engine").setLevel(logging.ERROR)
    zone_api = "/api/v2/ob/clusters/1/zones"
    async with httpx.AsyncClient(base_url=url, auth=("admin", password), timeout=30) as http:
        task, elapsed = await _watch(http, f"{zone_api}/{first}/stop", stopping, console)
        if task is None:
            return 130 if stopping.is_set() else 1
        cluster = (await http.get("/api/v2/ob/clusters/1")).json()["data"]
        wanted = {h.host: h.zone != first for h in fleet.hosts}
        n = sum(h.zone == first for h in fleet.hosts)
        did = f"{n} observer(s) of {first} stopped while the rest serve"
        ok = _summary(f"after stopping {first}", task, cluster, fleet, elapsed, console, wanted, did)
        if not (ok and task["status"] == "SUCCESSFUL" and cluster["status"] == "RUNNING"):
            return 1

        console.print(f"\n[bold]{second} too? Stopping it would leave each log stream one replica of three:")
        refused, _ = await _watch(http, f"{zone_api}/{second}/stop", stopping, console)
        if refused is None:
            return 130 if stopping.is_set() else 1
        check = refused["tasks"][0]
        last = (await _failed_logs(http, refused)).get(check["id"], "").strip().splitlines()[-1:]
        reason = " ".join(last).partition("FAILED: ")[2].split("; tenant")[0]  # the first stream named
        cluster = (await http.get("/api/v2/ob/clusters/1")).json()["data"]
        title = f"after the refused stop of {second}"
        untouched = _summary(title, refused, cluster, fleet, 0.0, console, wanted, "")
        if refused["status"] != "FAILED" or check["status"] != "FAILED" or not untouched:
            return 1
        console.print(f"[green]refused before anything was touched:[/] {reason}\n")

        task, elapsed = await _watch(http, f"{zone_api}/{first}/start", stopping, console)
        if task is None:
            return 130 if stopping.is_set() else 1
        cluster = (await http.get("/api/v2/ob/clusters/1")).json()["data"]
        everyone = {h.host: True for h in fleet.hosts}
        did = f"{n} observer(s) of {first} back and listening"
        ok = _summary(f"after starting {first}", task, cluster, fleet, elapsed, console, everyone, did)
        return 0 if ok and task["status"] == "SUCCESSFUL" else 1


def _summary(
    title: str,
    task: dict[str, Any],
    cluster: dict[str, Any],
    fleet: fakehosts.Fleet,
    elapsed: float,
    console: Console,
    wanted: dict[str, bool],
    did: str,
) -> bool:
    """A table of what each host really has now, then (if `did` says what the task did) a line for the
    task; True when each host is as `wanted` (host -> up) says."""
    import psutil

    t = Table(title=title, title_justify="left")
    for col in ("host", "zone", "observer pid", "process", "ports 2881/2882", "status"):
        t.add_column(col)
    statuses = {s["hostName"]: s["status"] for z in cluster["zones"] for s in z["servers"]}
    all_right = True
    for h in fleet.hosts:
        wanted_up = wanted[h.host]
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
    if did:
        color = "green" if task["status"] == "SUCCESSFUL" and all_right else "red"
        console.print(
            f"[{color}]task {task['id']} {task['name']} {task['status']}[/] · cluster {cluster['name']} "
            f"{cluster['status']} · {did} in {elapsed:.2f} s"
        )
    return all_right
