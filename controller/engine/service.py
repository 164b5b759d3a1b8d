"""What the API (or a test, or the demo) asks of the engine: start a task, or operate on one.

Each call validates, builds what it needs (the DAG and its timeouts), commits it, and wakes the engine;
it answers with the stored rows, so the caller renders them without reading them back.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace

from prometheus_client import Counter

from obstop.controller.config import ControllerConfig
from obstop.controller.engine.runner import Engine
from obstop.controller.states.cluster import STOPPABLE
from obstop.controller.steps import dag
from obstop.controller.steps.run import DEFAULT_FREEZE_TIMEOUT, TaskOptions
from obstop.controller.store import Store
from obstop.controller.store.models import Cluster, Subtask, Task

__all__ = ["DEFAULT_FREEZE_TIMEOUT", "Created", "Creator", "Service"]

FREEZE_MARGIN = 30  # seconds a prepare step gets beyond the freeze wait itself (connects, queries)


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
        cluster, zones, servers = await self.store.clusters.shape(cluster_id)
        process_timeout = int(self.config.stop.subtask_timeout)
        nodes = dag.build_stop_dag(
            zones,
            servers,
            process_timeout=process_timeout,
            prepare_timeout=max(process_timeout, options.freeze_timeout_seconds + FREEZE_MARGIN),
            step_timeout=int(self.config.engine.step_timeout),
        )
        context = dag.task_context(
            cluster.id, cluster.name, cluster.status, [sid for sid, _ in servers], zones, options
        )
        task, cluster, subtasks = await self.store.tasks.create(
            cluster_id, dag.TASK_NAME, (creator.id, creator.name), context, nodes, frozenset(STOPPABLE)
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

    async def task(self, task_id: int) -> tuple[Task, Cluster | None, list[Subtask]]:
        """A task with its subtasks, naming its cluster from its row (never loading its servers)."""
        task, subtasks = await self.store.tasks.get(task_id)
        return task, (await self.store.clusters.rows()).get(task.cluster_id), subtasks
