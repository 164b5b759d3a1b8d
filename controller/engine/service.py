"""What the API (or a test, or the demo) asks of the engine: stop or start a cluster, stop or start one
zone or one server (partial stops: the majority check is their first subtask), or operate on a task
(retry, roll back, skip, cancel).

Each call validates, builds what it needs (the DAG and its timeouts), commits it, and wakes the engine;
it answers with the stored rows, so the caller renders them without reading them back.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

from prometheus_client import Counter

from obstop.controller.config import ControllerConfig
from obstop.controller.engine.runner import Engine
from obstop.controller.errors import ControllerError, NotFound, ZoneNotFound
from obstop.controller.states.cluster import STARTABLE, STOPPABLE, ClusterStatus
from obstop.controller.states.intent import Partial
from obstop.controller.states.server import ServerStatus
from obstop.controller.states.zone import ZoneStatus
from obstop.controller.steps import dag, plan
from obstop.controller.steps.run import DEFAULT_FREEZE_TIMEOUT, ServerFacts, TaskOptions
from obstop.controller.store import Store
from obstop.controller.store.clusters import Layout
from obstop.controller.store.models import Cluster, Subtask, Task

__all__ = ["DEFAULT_FREEZE_TIMEOUT", "Created", "Creator", "Service"]

FREEZE_MARGIN = 30  # seconds a prepare step gets beyond the freeze wait itself (connects, queries)
DEFAULT_SERVICE_TIMEOUT = 600  # STOP/START ZONE/SERVER, for a cluster without [[cluster_sql]] (it fails)
# a partial stop or start needs the rest of the cluster up (the whole cluster stopped: start the cluster)
PARTIAL_REQUIRE = frozenset({ClusterStatus.RUNNING, ClusterStatus.UNAVAILABLE})


@dataclass(frozen=True)
class Created:
    task: Task
    cluster: Cluster
    subtasks: list[SimpleNamespace]


@dataclass(frozen=True)
class Creator:
    id: int
    name: str


class Service:
    def __init__(
        self, config: ControllerConfig, store: Store, engine: Engine, created: Counter | None = None
    ) -> None:
        self.config = config
        self.store = store
        self.engine = engine
        self.created = created
        self.planner: plan.Planner | None = None  # set by the daemon: plans need the dispatchers

    async def stop_cluster(
        self,
        cluster_id: int,
        creator: Creator,
        *,
        freeze: bool = True,
        freeze_timeout_seconds: int = DEFAULT_FREEZE_TIMEOUT,
        force: bool = False,
    ) -> Created:
        options = TaskOptions(freeze=freeze, freeze_timeout_seconds=freeze_timeout_seconds, force=force)
        layout = await self.store.clusters.layout(cluster_id)
        process_timeout = int(self.config.stop.subtask_timeout)
        nodes = dag.build_stop_dag(
            layout.zones,
            layout.servers,
            process_timeout=process_timeout,
            prepare_timeout=max(process_timeout, options.freeze_timeout_seconds + FREEZE_MARGIN),
            step_timeout=int(self.config.engine.step_timeout),
        )
        c = layout.cluster
        context = dag.task_context(
            c.id, c.name, c.status, [s[0] for s in layout.servers], [z for z, _ in layout.zones], options
        )
        return await self._create(cluster_id, dag.TASK_NAME, creator, context, nodes, STOPPABLE)

    async def start_cluster(self, cluster_id: int, creator: Creator) -> Created:
        """OCP's "Start OB cluster": each observer started as it restarts itself, then statuses RUNNING."""
        layout = await self.store.clusters.layout(cluster_id)
        nodes = dag.build_start_dag(
            layout.zones,
            layout.servers,
            process_timeout=int(self.config.start.subtask_timeout),
            step_timeout=int(self.config.engine.step_timeout),
        )
        c = layout.cluster
        _, _, servers = await self.store.clusters.get(cluster_id)
        context = dag.task_context(
            c.id,
            c.name,
            c.status,
            [s.id for s in servers],
            [z for z, _ in layout.zones],
            host_names=sorted({s.host for s in servers}),
        )
        return await self._create(cluster_id, dag.START_TASK_NAME, creator, context, nodes, STARTABLE)

    async def stop_zone(
        self,
        cluster_id: int,
        zone_name: str,
        creator: Creator,
        *,
        freeze: bool = True,
        freeze_timeout_seconds: int = DEFAULT_FREEZE_TIMEOUT,
        force: bool = False,
    ) -> Created:
        """OCP's "Stop OB zone": the majority check, STOP ZONE, then the zone's observers; the cluster
        stays RUNNING."""
        options = TaskOptions(freeze=freeze, freeze_timeout_seconds=freeze_timeout_seconds, force=force)
        layout = await self.store.clusters.layout(cluster_id)
        zone, servers = _zone(layout, zone_name)
        nodes = dag.build_zone_stop_dag(zone, servers, **self._partial_timeouts(cluster_id, options))
        context = dag.partial_context(
            Partial.STOP_ZONE,
            _cluster(layout),
            zone,
            [s[0] for s in servers],
            (ClusterStatus.RUNNING, ZoneStatus.STOPPED),
            options,
        )
        return await self._partial(cluster_id, Partial.STOP_ZONE, creator, context, nodes)

    async def start_zone(self, cluster_id: int, zone_name: str, creator: Creator) -> Created:
        """OCP's "Start OB zone": the zone's observers, then START ZONE once they answer."""
        layout = await self.store.clusters.layout(cluster_id)
        zone, servers = _zone(layout, zone_name)
        timeouts = self._partial_timeouts(cluster_id, None)
        nodes = dag.build_zone_start_dag(
            zone,
            servers,
            process_timeout=int(self.config.start.subtask_timeout),
            step_timeout=timeouts["step_timeout"],
            service_timeout=timeouts["service_timeout"],
        )
        context = dag.partial_context(
            Partial.START_ZONE,
            _cluster(layout),
            zone,
            [s[0] for s in servers],
            (ClusterStatus.RUNNING, ZoneStatus.RUNNING),
        )
        return await self._partial(cluster_id, Partial.START_ZONE, creator, context, nodes)

    async def stop_server(
        self,
        cluster_id: int,
        server_id: int,
        creator: Creator,
        *,
        freeze_server: bool = True,
        freeze_timeout_seconds: int = DEFAULT_FREEZE_TIMEOUT,
        force: bool = False,
    ) -> Created:
        """OCP's "Stop OB server" (freezeServer: the minor freeze first; force: FORCE STOP SERVER, never
        without the majority check)."""
        options = TaskOptions(
            freeze=freeze_server, freeze_timeout_seconds=freeze_timeout_seconds, force=force
        )
        layout = await self.store.clusters.layout(cluster_id)
        server, zone, others = _server(layout, server_id)
        nodes = dag.build_server_stop_dag(zone, server, **self._partial_timeouts(cluster_id, options))
        alone = all(st == ServerStatus.PROCESS_STOPPED for _, _, st in others)
        context = dag.partial_context(
            Partial.STOP_SERVER,
            _cluster(layout),
            zone,
            [server_id],
            (ClusterStatus.RUNNING, ZoneStatus.STOPPED if alone else zone[1]),
            options,
            server_id=server_id,
        )
        return await self._partial(cluster_id, Partial.STOP_SERVER, creator, context, nodes)

    async def start_server(self, cluster_id: int, server_id: int, creator: Creator) -> Created:
        """OCP's "Start OB server": its observer, then START SERVER once it answers."""
        layout = await self.store.clusters.layout(cluster_id)
        server, zone, _ = _server(layout, server_id)
        timeouts = self._partial_timeouts(cluster_id, None)
        nodes = dag.build_server_start_dag(
            zone,
            server,
            process_timeout=int(self.config.start.subtask_timeout),
            step_timeout=timeouts["step_timeout"],
            service_timeout=timeouts["service_timeout"],
        )
        context = dag.partial_context(
            Partial.START_SERVER,
            _cluster(layout),
            zone,
            [server_id],
            (ClusterStatus.RUNNING, ZoneStatus.RUNNING),
            server_id=server_id,
        )
        return await self._partial(cluster_id, Partial.START_SERVER, creator, context, nodes)

    def _partial_timeouts(self, cluster_id: int, options: TaskOptions | None) -> dict[str, int]:
        sql = next((c for c in self.config.cluster_sql if c.cluster_id == cluster_id), None)
        service = sql.service_timeout if sql is not None else DEFAULT_SERVICE_TIMEOUT
        process_timeout = int(self.config.stop.subtask_timeout)
        out = {
            "process_timeout": process_timeout,
            "step_timeout": int(self.config.engine.step_timeout),
            # the statement and the wait for the leaders share it; connects and the check come on top
            "service_timeout": int(service) + FREEZE_MARGIN,
        }
        if options is not None:
            out["prepare_timeout"] = max(process_timeout, options.freeze_timeout_seconds + FREEZE_MARGIN)
        return out

    async def _partial(
        self,
        cluster_id: int,
        kind: Partial,
        creator: Creator,
        context: dict[str, object],
        nodes: list[dag.NodeSpec],
    ) -> Created:
        name = dag.PARTIAL_TASK_NAMES[kind]
        return await self._create(cluster_id, name, creator, context, nodes, PARTIAL_REQUIRE)

    async def _create(
        self,
        cluster_id: int,
        name: str,
        creator: Creator,
        context: dict[str, object],
        nodes: list[dag.NodeSpec],
        require: frozenset[str],
    ) -> Created:
        task, cluster, subtasks = await self.store.tasks.create(
            cluster_id, name, (creator.id, creator.name), context, nodes, require
        )
        if self.created is not None:
            self.created.inc()
        self.engine.wake()
        return Created(task, cluster, subtasks)

    async def retry(self, task_id: int, subtask_id: int | None = None) -> list[int]:
        """Retry every FAILED subtask of a task, or the one named; answers the ids made READY."""
        ids = await self.store.operations.retry(task_id, subtask_id)
        self.engine.wake()
        return ids

    async def rollback(self, task_id: int) -> list[int]:
        """Roll a FAILED task back, walking its DAG backwards; answers the ids rolled back first."""
        ids = await self.store.operations.rollback(task_id)
        self.engine.wake()
        return ids

    async def skip(self, task_id: int, subtask_id: int) -> None:
        await self.store.operations.skip(task_id, subtask_id)
        self.engine.wake()

    async def cancel(self, task_id: int, subtask_id: int) -> None:
        """CANCELING is committed first; the engine that runs the subtask then interrupts it (this one at
        once, another at its next heartbeat)."""
        await self.store.operations.cancel(task_id, subtask_id)
        self.engine.cancel(subtask_id)

    async def task(self, task_id: int) -> tuple[Task, Cluster | None, list[Subtask]]:
        """A task with its subtasks, naming its cluster from its row (never loading its servers)."""
        task, subtasks = await self.store.tasks.get(task_id)
        return task, (await self.store.clusters.rows()).get(task.cluster_id), subtasks

    # --- plans (dry runs): the same DAG and every check, nothing acted on, no task left behind ---------

    async def plan_stop(
        self,
        cluster_id: int,
        *,
        freeze: bool = True,
        freeze_timeout_seconds: int = DEFAULT_FREEZE_TIMEOUT,
        force: bool = False,
    ) -> dict[str, Any]:
        """What `stop_cluster` would do with these options, and what would block it."""
        options = TaskOptions(freeze=freeze, freeze_timeout_seconds=freeze_timeout_seconds, force=force)
        layout = await self.store.clusters.layout(cluster_id)
        process_timeout = int(self.config.stop.subtask_timeout)
        nodes = dag.build_stop_dag(  # as stop_cluster builds it
            layout.zones,
            layout.servers,
            process_timeout=process_timeout,
            prepare_timeout=max(process_timeout, options.freeze_timeout_seconds + FREEZE_MARGIN),
            step_timeout=int(self.config.engine.step_timeout),
        )
        spec = plan.PlanSpec(dag.TASK_NAME, "stop", STOPPABLE, plan.STOP_CLUSTER_CHECKS)
        return await self._plan(cluster_id, spec, nodes, options)

    async def plan_start(self, cluster_id: int) -> dict[str, Any]:
        """What `start_cluster` would do, and what would block it."""
        layout = await self.store.clusters.layout(cluster_id)
        nodes = dag.build_start_dag(
            layout.zones,
            layout.servers,
            process_timeout=int(self.config.start.subtask_timeout),
            step_timeout=int(self.config.engine.step_timeout),
        )
        spec = plan.PlanSpec(dag.START_TASK_NAME, "start", STARTABLE, plan.START_CLUSTER_CHECKS)
        return await self._plan(cluster_id, spec, nodes, None)

    async def _plan(
        self,
        cluster_id: int,
        spec: plan.PlanSpec,
        nodes: list[dag.NodeSpec],
        options: TaskOptions | None,
        server_ids: Collection[int] | None = None,
    ) -> dict[str, Any]:
        """A plan of `spec` over the cluster's servers (or those named: a zone's, one server)."""
        if self.planner is None:
            raise ControllerError("plans need the controller's dispatchers, and this service has none")
        cluster, zones, servers = await self.store.clusters.get(cluster_id)
        holder = await self.store.tasks.holder(cluster_id)
        facts = plan.ClusterFacts(
            cluster.id,
            cluster.name,
            cluster.status,
            None if holder is None else f"task {holder.id} ({holder.name}, {holder.status})",
        )
        chosen = [
            (ServerFacts(s.id, s.zone, s.host, s.ip, s.sql_port, s.rpc_port, s.home_path), s.status)
            for s in servers
            if server_ids is None or s.id in server_ids
        ]
        return await self.planner.plan(spec, facts, {z.name: z.status for z in zones}, chosen, nodes, options)


def _cluster(layout: Layout) -> tuple[int, str, str]:
    return layout.cluster.id, layout.cluster.name, layout.cluster.status


def _zone(layout: Layout, name: str) -> tuple[tuple[str, str], list[tuple[int, str, str]]]:
    """The zone (name, status) and its servers (id, zone, status), or ZoneNotFound."""
    zone = next((z for z in layout.zones if z[0] == name), None)
    if zone is None:
        raise ZoneNotFound(f"cluster {layout.cluster.id} ({layout.cluster.name}) has no zone {name!r}")
    return zone, [s for s in layout.servers if s[1] == name]


def _server(
    layout: Layout, server_id: int
) -> tuple[tuple[int, str, str], tuple[str, str], list[tuple[int, str, str]]]:
    """The server (id, zone, status), its zone (name, status), and the other servers of that zone."""
    server = next((s for s in layout.servers if s[0] == server_id), None)
    if server is None:
        raise NotFound(f"cluster {layout.cluster.id} ({layout.cluster.name}) has no server {server_id}")
    zone, members = _zone(layout, server[1])
    return server, zone, [s for s in members if s[0] != server_id]
