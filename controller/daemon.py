"""`obstop controller`: one run() whose TaskGroup owns the API server, the engine and the dispatchers.

SIGTERM (or SIGINT) sets the stop event: the API stops accepting, running subtasks drain for a bounded
time, the rest stay RUNNING under this controller's lease and are resumed at the next start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Iterator
from dataclasses import dataclass

import uvicorn
from fastapi import FastAPI
from prometheus_client import CollectorRegistry, Counter

from obstop.agent import sdnotify
from obstop.controller.api.app import Controller, create_app
from obstop.controller.auth import Authenticator
from obstop.controller.config import ControllerConfig
from obstop.controller.dispatch.agentless import AgentlessDispatcher, Dispatcher, Router
from obstop.controller.engine.runner import Engine
from obstop.controller.inventory import load_inventory
from obstop.controller.steps.freeze import SQLPreparation
from obstop.controller.steps.stop import StopSteps
from obstop.controller.store.core import Store

log = logging.getLogger("obstop.controller")


class _Server(uvicorn.Server):
    """uvicorn without its own signal handlers: the daemon owns SIGTERM."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@dataclass
class Parts:
    config: ControllerConfig
    store: Store
    dispatchers: list[Dispatcher]
    router: Router
    engine: Engine
    app: FastAPI

    async def run(self, stopping: asyncio.Event) -> None:
        """The engine and dispatchers until stopping is set (the API server is the caller's)."""
        async with asyncio.TaskGroup() as tg:
            for d in self.dispatchers:
                tg.create_task(d.run(stopping), name=f"dispatcher-{type(d).__name__}")
            tg.create_task(self.engine.run(stopping), name="engine")

    async def close(self) -> None:
        await self.router.close()
        await self.store.close()


def dispatchers_for(config: ControllerConfig, store: Store) -> list[Dispatcher]:
    found: list[Dispatcher] = [AgentlessDispatcher(config.agentless, store)]
    if config.mqtt.url:
        from obstop.controller.dispatch.mqtt import MqttDispatcher

        found.append(MqttDispatcher(config, store))
    return found


async def build(config: ControllerConfig) -> Parts:
    """Open the store (migrating it), sync the inventory, and wire engine, dispatch and API."""
    inventory = load_inventory(config.inventory)
    store = await Store.open(config.store.url)
    try:
        await store.sync_inventory(inventory)
    except BaseException:
        await store.close()
        raise
    dispatchers = dispatchers_for(config, store)
    router = Router(*dispatchers)
    steps = StopSteps(store, router, config, SQLPreparation(store, config))
    engine = Engine(
        store,
        steps.run,
        owner=config.engine.controller_id,
        lease=config.engine.lease_seconds,
        max_concurrency=config.engine.max_concurrency,
    )
    registry = CollectorRegistry()
    ctl = Controller(
        config,
        store,
        engine,
        Authenticator(config.api.users),
        registry,
        Counter("obstop_tasks_created", "stop tasks created", registry=registry),
    )
    return Parts(config, store, dispatchers, router, engine, create_app(ctl))


async def run(config: ControllerConfig, stopping: asyncio.Event | None = None) -> None:
    stopping = stopping or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    parts = await build(config)
    host, port = config.api.host_port
    server = _Server(
        uvicorn.Config(parts.app, host=host, port=port, log_level="warning", lifespan="off", access_log=False)
    )

    async def stop_server() -> None:
        await stopping.wait()
        server.should_exit = True

    async def health() -> None:
        """READY once the API listens; watchdog pings only while the store answers."""
        while not server.started:  # noqa: ASYNC110 - uvicorn exposes a flag only
            await asyncio.sleep(0.05)
        sdnotify.notify("READY=1")
        interval = sdnotify.watchdog_interval()
        while interval is not None and not stopping.is_set():
            await parts.store.ping()
            sdnotify.notify("WATCHDOG=1")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(interval):
                    await stopping.wait()

    try:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(parts.run(stopping), name="controller")
            tg.create_task(server.serve(), name="api")
            tg.create_task(stop_server(), name="api-stopper")
            tg.create_task(health(), name="health")
            log.info(
                "obstop controller %s listening on http://%s:%d", config.engine.controller_id, host, port
            )
    finally:
        await parts.close()
    log.info("controller stopped")
