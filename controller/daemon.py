"""`obstop controller`: one run() whose TaskGroup owns the API server, the engine and the dispatchers.

SIGTERM (or SIGINT) sets the stop event: the API stops accepting, running subtasks drain for a bounded
time, the rest stay RUNNING under this controller's lease and are resumed at the next start.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
from collections.abc import Iterator
from dataclasses import dataclass

import uvicorn
from fastapi import FastAPI
from prometheus_client import CollectorRegistry, Counter
from sqlalchemy.exc import SQLAlchemyError

from obstop.agent import sdnotify
from obstop.agent.tomlconf import one_line
from obstop.controller.api import Controller, create_app
from obstop.controller.auth import Authenticator
from obstop.controller.config import ControllerConfig
from obstop.controller.dispatch import Dispatcher, Router
from obstop.controller.dispatch.agentless import AgentlessDispatcher
from obstop.controller.engine.reconcile import Reconciler
from obstop.controller.engine.runner import Engine
from obstop.controller.engine.service import Service
from obstop.controller.errors import ConfigError, StoreLost
from obstop.controller.inventory import load_inventory
from obstop.controller.metrics import Metrics
from obstop.controller.steps.freeze import SQLPreparation
from obstop.controller.steps.lifecycle import Steps
from obstop.controller.steps.plan import Planner
from obstop.controller.store import Store
from obstop.controller.store.commands import Commands
from obstop.controller.store.db import store_failure

GC_YOUNG = 20_000  # allocations between passes of the young generation (CPython's default: 700)

log = logging.getLogger("obstop.controller")


class _Server(uvicorn.Server):
    """uvicorn without its own signal handlers: the daemon owns SIGTERM."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class _Marks:
    """A command's signal marks, in the store (the agentless procedure's SignalJournal)."""

    def __init__(self, commands: Commands, command_id: str) -> None:
        self._commands = commands
        self._command_id = command_id

    async def record(self, mark: str) -> bool:
        return await self._commands.mark(self._command_id, mark)

    async def marks(self) -> list[str]:
        return await self._commands.marks(self._command_id)


@dataclass
class Parts:
    """The controller, wired: everything but the HTTP server (tests drive `app` through ASGI)."""

    config: ControllerConfig
    store: Store
    router: Router
    engine: Engine
    service: Service
    app: FastAPI
    reconciler: Reconciler
    preparation: SQLPreparation | None = None  # its checkpoint poller runs beside the engine

    async def run(self, stopping: asyncio.Event) -> None:
        """The engine, dispatchers and reconciler until stopping is set."""
        await self.reconciler.load()
        async with asyncio.TaskGroup() as tg:
            for d in self.router.dispatchers:
                tg.create_task(d.run(stopping), name=f"dispatcher-{type(d).__name__}")
            tg.create_task(self.engine.run(stopping), name="engine")
            tg.create_task(self.reconciler.run(stopping), name="reconciler")
            if self.preparation is not None:
                tg.create_task(self.preparation.run(stopping), name="freeze-poller")

    async def close(self) -> None:
        await self.router.close()
        await self.store.close()


def dispatchers_for(config: ControllerConfig, store: Store) -> list[Dispatcher]:
    found: list[Dispatcher] = [
        AgentlessDispatcher(config.agentless, lambda command_id: _Marks(store.commands, command_id))
    ]
    if config.mqtt.url:
        from obstop.controller.dispatch.mqtt import MqttDispatcher

        found.append(MqttDispatcher(config))
    return found


async def open_store(url: str) -> Store:
    """The store, or a ConfigError in one line saying why it cannot be opened (never a traceback)."""
    try:
        return await Store.open(url)
    except (OSError, SQLAlchemyError) as exc:
        where = url.split("://")[0] + "://..." + url.split("@")[-1] if "@" in url else url  # no credentials
        raise ConfigError(f"store.url: cannot open the store at {where}: {one_line(exc)}") from exc


async def build(config: ControllerConfig) -> Parts:
    """Open the store (migrating it), sync the inventory, and wire engine, dispatch and API."""
    inventory = load_inventory(config.inventory)
    store = await open_store(config.store.url)
    try:
        async with store.db.exclusive():  # controllers sharing the store sync one after the other
            await store.clusters.sync(inventory)
        router = Router(*dispatchers_for(config, store))
    except BaseException:
        await store.close()
        raise
    preparation = SQLPreparation(config.cluster_sql)
    steps = Steps(router, config.stop, config.start, preparation, config.cluster_sql)
    engine = Engine(
        store,
        steps.run,
        canceller=steps.cancel,
        owner=config.engine.controller_id,
        lease=config.engine.lease_seconds,
        max_concurrency=config.engine.max_concurrency,
    )
    reconciler = Reconciler(
        store,
        router,
        probe_interval=config.watch.probe_interval,
        report_interval=config.watch.report_interval,
    )
    engine.on_task_end = reconciler.task_ended
    registry = CollectorRegistry()
    created = Counter("obstop_tasks_created", "tasks created", registry=registry)
    service = Service(config, store, engine, created)
    service.planner = Planner(router, config.cluster_sql, config.stop)
    metrics = Metrics(registry)
    engine.metrics = metrics
    if config.mqtt.url:
        from obstop.controller.dispatch.mqtt import MqttDispatcher

        for d in router.dispatchers:
            if isinstance(d, MqttDispatcher):
                d.metrics = metrics
    app = create_app(Controller(config, store, service, Authenticator(config.api), registry, metrics))
    return Parts(config, store, router, engine, service, app, reconciler, preparation)


def settle_heap() -> None:
    """What start-up made (modules, compiled SQL, schemas, the inventory) lives as long as the daemon: it
    is moved out of the collector's sight, so a full collection walks only what the daemon made since.
    The young generation is collected every GC_YOUNG allocations and the older ones rarely: a stop of
    thousands of servers keeps thousands of steps alive for seconds, which each pass of the middle
    generation walked again. Measured (gc callbacks): at 1,000 servers, 8 full collections of 90-160 ms
    before (one inside the first stop call), none after; at 5,000, 3.2 s of collections -> 0.85-1.0 s."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_YOUNG, 50, 100)


async def run(config: ControllerConfig, stopping: asyncio.Event, ready: asyncio.Event | None = None) -> None:
    """The controller until stopping is set; `ready` is set once the API listens."""
    parts = await build(config)
    await parts.service.warm_up()  # the first stop call after a start finds its SQL compiled
    settle_heap()
    host, port = config.api.host_port
    api = config.api
    server = _Server(
        uvicorn.Config(
            parts.app,
            host=host,
            port=port,
            log_level="warning",
            lifespan="off",
            access_log=False,
            ssl_certfile=str(api.tls_cert) if api.tls_cert else None,  # https when set
            ssl_keyfile=str(api.tls_key) if api.tls_key else None,
        )
    )
    if api.refuses_plain_basic:
        log.warning(
            "api.listen %s is not loopback and [api] has no tls_cert: HTTP Basic will be refused (set "
            "tls_cert and tls_key, or allow_basic_over_http behind a TLS proxy)",
            api.listen,
        )

    async def stop_server() -> None:
        await stopping.wait()
        server.should_exit = True

    async def health() -> None:
        """READY once the API listens; watchdog pings only while the store answers."""
        while not server.started:  # noqa: ASYNC110 - uvicorn exposes a flag only
            await asyncio.sleep(0.02)
        log.info(
            "obstop controller %s listening on %s://%s:%d",
            config.engine.controller_id,
            api.scheme,
            host,
            port,
        )
        if ready is not None:
            ready.set()
        sdnotify.notify("READY=1")
        interval = sdnotify.watchdog_interval()
        while interval is not None and not stopping.is_set():
            await parts.store.db.ping()
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
    except BaseExceptionGroup as group:
        lost = _store_error(group)
        if lost is None:
            raise
        cause = one_line(getattr(lost, "orig", None) or lost)[:300]  # the driver's words, not the SQL
        raise StoreLost(
            f"the store stopped answering: {cause}; exiting, to be started again (Restart=on-failure) and "
            "resume its tasks"
        ) from None
    finally:
        with contextlib.suppress(SQLAlchemyError, OSError):  # closing a store that is gone
            await parts.close()
    log.info("controller stopped")


def _store_error(group: BaseExceptionGroup[BaseException]) -> BaseException | None:
    """The store's error, when every loop that died died of one (the store went away mid-run)."""
    leaves: list[BaseException] = []

    def walk(g: BaseExceptionGroup[BaseException]) -> None:
        for e in g.exceptions:
            if isinstance(e, BaseExceptionGroup):
                walk(e)
            else:
                leaves.append(e)

    walk(group)
    store = [e for e in leaves if store_failure(e)]
    return store[0] if store and len(store) == len(leaves) else None


async def serve(config: ControllerConfig) -> None:
    """The daemon: run() with SIGTERM and SIGINT setting the stop event."""
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    await run(config, stopping)
