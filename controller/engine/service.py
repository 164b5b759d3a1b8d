"""What the API (or a test, or the demo) asks of the engine.

An operation on a cluster (stop or start it, stop or start one zone or one server) is first prepared
(controller/engine/operations.py: its DAG, context and checks, from the cluster as it is now), then either
created, committed and the engine woken, or planned: the same DAG and every check, nothing acted on, no task
left behind. The operations on a task (retry, roll back, skip, cancel) commit their moves and wake the
engine. Every answer carries the stored rows, so the caller renders them without reading them back.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

from prometheus_client import Counter

from obstop.controller.config import ControllerConfig
from obstop.controller.engine.operations import Operations, Prepared
from obstop.controller.engine.runner import Engine
from obstop.controller.errors import ControllerError
from obstop.controller.steps import plan
from obstop.controller.steps.run import DEFAULT_FREEZE_TIMEOUT, ServerFacts, TaskOptions
from obstop.controller.store import Store
from obstop.controller.store.models import Cluster, Subtask, Task
from obstop.controller.store.tasks import Rehearsed

log = logging.getLogger("obstop.service")

__all__ = ["DEFAULT_FREEZE_TIMEOUT", "Created", "Creator", "Prepared", "Service"]


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
        self.operations = Operations(config)
        self.planner: plan.Planner | None = None  # set by the daemon: plans need the dispatchers

    # --- operations on a cluster: prepared, then created or planned ----------------------------------

    async def prepare_stop_cluster(
        self,
        cluster_id: int,
        *,
        freeze: bool = True,
        freeze_timeout_seconds: int = DEFAULT_FREEZE_TIMEOUT,
        force: bool = False,
    ) -> Prepared:
        options = TaskOptions(freeze=freeze, freeze_timeout_seconds=freeze_timeout_seconds, force=force)
        return self.operations.stop_cluster(await self.store.clusters.layout(cluster_id), options)

    async def prepare_start_cluster(self, cluster_id: int) -> Prepared:
        layout = await self.store.clusters.layout(cluster_id)
        _, _, servers = await self.store.clusters.get(cluster_id)
        return self.operations.start_cluster(layout, sorted({s.host for s in servers}))

    async def prepare_stop_zone(
        self,
        cluster_id: int,
        zone_name: str,
        *,
        freeze: bool = True,
        freeze_timeout_seconds: int = DEFAULT_FREEZE_TIMEOUT,
        force: bool = False,
    ) -> Prepared:
        options = TaskOptions(freeze=freeze, freeze_timeout_seconds=freeze_timeout_seconds, force=force)
        return self.operations.stop_zone(await self.store.clusters.layout(cluster_id), zone_name, options)

    async def prepare_start_zone(self, cluster_id: int, zone_name: str) -> Prepared:
        return self.operations.start_zone(await self.store.clusters.layout(cluster_id), zone_name)

    async def prepare_stop_server(
        self,
        cluster_id: int,
        server_id: int,
        *,
        freeze_server: bool = True,
        freeze_timeout_seconds: int = DEFAULT_FREEZE_TIMEOUT,
        force: bool = False,
    ) -> Prepared:
        options = TaskOptions(
            freeze=freeze_server, freeze_timeout_seconds=freeze_timeout_seconds, force=force
        )
        return self.operations.stop_server(await self.store.clusters.layout(cluster_id), server_id, options)

    async def prepare_start_server(self, cluster_id: int, server_id: int) -> Prepared:
        return self.operations.start_server(await self.store.clusters.layout(cluster_id), server_id)

    async def create(self, prepared: Prepared, creator: Creator) -> Created:
        """The task, committed with its DAG (it takes the cluster's lock); the engine runs it."""
        task, cluster, subtasks = await self.store.tasks.create(
            prepared.cluster_id,
            prepared.name,
            (creator.id, creator.name),
            prepared.context,
            prepared.nodes,
            prepared.require,
        )
        if self.created is not None:
            self.created.inc()
        self.engine.wake()
        return Created(task, cluster, subtasks)

    async def warm_up(self) -> None:
        """At start: prepare a stop of the largest cluster and rehearse its create (every statement run,
        then rolled back), so the first stop call finds its SQL compiled and its code warm. Changes nothing;
        best effort."""
        try:
            rows = await self.store.clusters.all()
            if not rows:
                return
            cluster = max(rows, key=lambda r: len(r[2]))[0]
            prepared = await self.prepare_stop_cluster(cluster.id, freeze=False)
            await self.store.tasks.create(
                prepared.cluster_id,
                prepared.name,
                (0, "warm-up"),
                prepared.context,
                prepared.nodes,
                prepared.require,
                rehearse=True,
            )
        except Rehearsed:
            pass
        except Exception as exc:  # a cluster busy or not stoppable now: the first call compiles instead
            log.debug("warm-up stopped early: %r", exc)

    async def plan(self, prepared: Prepared) -> dict[str, Any]:
        """What the task would do, and what would block it: every check, nothing acted on, no task."""
        if self.planner is None:
            raise ControllerError("plans need the controller's dispatchers, and this service has none")
        cluster, zones, servers = await self.store.clusters.get(prepared.cluster_id)
        holder = await self.store.tasks.holder(prepared.cluster_id)
        facts = plan.ClusterFacts(
            cluster.id,
            cluster.name,
            cluster.status,
            None if holder is None else f"task {holder.id} ({holder.name}, {holder.status})",
        )
        everyone = [
            (ServerFacts(s.id, s.zone, s.host, s.ip, s.sql_port, s.rpc_port, s.home_path), s.status)
            for s in servers
        ]
        return await self.planner.plan(
            prepared.spec,
            facts,
            {z.name: z.status for z in zones},
            everyone,
            prepared.nodes,
            prepared.options,
            acting_on=prepared.server_ids,
            subject=prepared.subject or f"cluster {cluster.name}",
        )

    # --- operations on a task --------------------------------------------------------------------------

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
