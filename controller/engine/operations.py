"""Each operation on a cluster, prepared once: the DAG it runs (with its timeouts), OCP's task context, the
cluster statuses it needs, the servers it acts on and the checks its plan runs. The service then either
creates the task from it or plans it (a dry run): a plan can never differ from what the task would do.
"""

from __future__ import annotations

from dataclasses import dataclass

from obstop.controller.config import ControllerConfig
from obstop.controller.errors import NotFound, ZoneNotFound
from obstop.controller.states.cluster import STARTABLE, STOPPABLE, ClusterStatus
from obstop.controller.states.intent import Partial
from obstop.controller.states.server import ServerStatus
from obstop.controller.states.zone import ZoneStatus
from obstop.controller.steps import dag, plan
from obstop.controller.steps.run import TaskOptions
from obstop.controller.store.clusters import Layout

FREEZE_MARGIN = 30  # seconds a prepare step gets beyond the freeze wait itself (connects, queries)
DEFAULT_SERVICE_TIMEOUT = 600  # STOP/START ZONE/SERVER, for a cluster without [[cluster_sql]] (it fails)
# a partial stop or start needs the rest of the cluster up (the whole cluster stopped: start the cluster)
PARTIAL_REQUIRE = frozenset({ClusterStatus.RUNNING, ClusterStatus.UNAVAILABLE})

Zone = tuple[str, str]  # (name, status)
ServerRow = tuple[int, str, str]  # (id, zone, status)


@dataclass(frozen=True)
class Prepared:
    cluster_id: int
    name: str  # the task's name, as OCP calls it
    nodes: list[dag.NodeSpec]
    context: dict[str, object]
    require: frozenset[str]  # the cluster statuses it needs
    spec: plan.PlanSpec  # what its plan checks
    options: TaskOptions | None
    server_ids: frozenset[int] | None = None  # the servers it acts on; None: every one
    subject: str = ""  # what it acts on, in words ("zone zone1"): for the plan's lines


class Operations:
    def __init__(self, config: ControllerConfig) -> None:
        self.config = config

    def stop_cluster(self, layout: Layout, options: TaskOptions) -> Prepared:
        nodes = dag.build_stop_dag(layout.zones, layout.servers, **self._stop_timeouts(options))
        c = layout.cluster
        context = dag.task_context(
            c.id, c.name, c.status, [s[0] for s in layout.servers], [z for z, _ in layout.zones], options
        )
        spec = plan.PlanSpec(dag.TASK_NAME, "stop", STOPPABLE, plan.STOP_CLUSTER_CHECKS)
        return Prepared(c.id, dag.TASK_NAME, nodes, context, STOPPABLE, spec, options)

    def start_cluster(self, layout: Layout, host_names: list[str]) -> Prepared:
        """OCP's "Start OB cluster": each observer started as it restarts itself, then statuses RUNNING."""
        nodes = dag.build_start_dag(
            layout.zones,
            layout.servers,
            process_timeout=int(self.config.start.subtask_timeout),
            step_timeout=int(self.config.engine.step_timeout),
        )
        c = layout.cluster
        context = dag.task_context(
            c.id,
            c.name,
            c.status,
            [s[0] for s in layout.servers],
            [z for z, _ in layout.zones],
            host_names=host_names,
        )
        spec = plan.PlanSpec(dag.START_TASK_NAME, "start", STARTABLE, plan.START_CLUSTER_CHECKS)
        return Prepared(c.id, dag.START_TASK_NAME, nodes, context, STARTABLE, spec, None)

    def stop_zone(self, layout: Layout, zone_name: str, options: TaskOptions) -> Prepared:
        """OCP's "Stop OB zone": the majority check, STOP ZONE, then the zone's observers; the cluster
        stays RUNNING."""
        zone, servers = _zone(layout, zone_name)
        nodes = dag.build_zone_stop_dag(zone, servers, **self._partial_timeouts(layout, options))
        targets = (ClusterStatus.RUNNING, ZoneStatus.STOPPED)
        context = dag.partial_context(
            Partial.STOP_ZONE, _cluster(layout), zone, [s[0] for s in servers], targets, options
        )
        return self._partial(layout, Partial.STOP_ZONE, nodes, context, options, servers, f"zone {zone[0]}")

    def start_zone(self, layout: Layout, zone_name: str) -> Prepared:
        """OCP's "Start OB zone": the zone's observers, then START ZONE once they answer."""
        zone, servers = _zone(layout, zone_name)
        nodes = dag.build_zone_start_dag(zone, servers, **self._partial_start_timeouts(layout))
        targets = (ClusterStatus.RUNNING, ZoneStatus.RUNNING)
        context = dag.partial_context(
            Partial.START_ZONE, _cluster(layout), zone, [s[0] for s in servers], targets
        )
        return self._partial(layout, Partial.START_ZONE, nodes, context, None, servers, f"zone {zone[0]}")

    def stop_server(self, layout: Layout, server_id: int, options: TaskOptions) -> Prepared:
        """OCP's "Stop OB server" (freezeServer: the minor freeze first; force: FORCE STOP SERVER, never
        without the majority check)."""
        server, zone, others = _server(layout, server_id)
        nodes = dag.build_server_stop_dag(zone, server, **self._partial_timeouts(layout, options))
        alone = all(st == ServerStatus.PROCESS_STOPPED for _, _, st in others)
        targets = (ClusterStatus.RUNNING, ZoneStatus.STOPPED if alone else zone[1])
        context = dag.partial_context(
            Partial.STOP_SERVER, _cluster(layout), zone, [server_id], targets, options, server_id=server_id
        )
        subject = f"server {server_id}"
        return self._partial(layout, Partial.STOP_SERVER, nodes, context, options, [server], subject)

    def start_server(self, layout: Layout, server_id: int) -> Prepared:
        """OCP's "Start OB server": its observer, then START SERVER once it answers."""
        server, zone, _ = _server(layout, server_id)
        nodes = dag.build_server_start_dag(zone, server, **self._partial_start_timeouts(layout))
        targets = (ClusterStatus.RUNNING, ZoneStatus.RUNNING)
        context = dag.partial_context(
            Partial.START_SERVER, _cluster(layout), zone, [server_id], targets, server_id=server_id
        )
        subject = f"server {server_id}"
        return self._partial(layout, Partial.START_SERVER, nodes, context, None, [server], subject)

    def _partial(
        self,
        layout: Layout,
        kind: Partial,
        nodes: list[dag.NodeSpec],
        context: dict[str, object],
        options: TaskOptions | None,
        servers: list[ServerRow],
        subject: str,
    ) -> Prepared:
        name = dag.PARTIAL_TASK_NAMES[kind]
        stopping = kind in (Partial.STOP_ZONE, Partial.STOP_SERVER)
        checks = plan.PARTIAL_STOP_CHECKS if stopping else plan.START_CLUSTER_CHECKS
        spec = plan.PlanSpec(name, "stop" if stopping else "start", PARTIAL_REQUIRE, checks)
        ids = frozenset(s[0] for s in servers)
        return Prepared(layout.cluster.id, name, nodes, context, PARTIAL_REQUIRE, spec, options, ids, subject)

    def _stop_timeouts(self, options: TaskOptions) -> dict[str, int]:
        process_timeout = int(self.config.stop.subtask_timeout)
        return {
            "process_timeout": process_timeout,
            # each server's checkpoint wait runs in its prepare step: bounded by the freeze timeout
            "prepare_timeout": max(process_timeout, options.freeze_timeout_seconds + FREEZE_MARGIN),
            "step_timeout": int(self.config.engine.step_timeout),
        }

    def _service_timeout(self, layout: Layout) -> int:
        sql = next((c for c in self.config.cluster_sql if c.cluster_id == layout.cluster.id), None)
        # the statement and the wait for the leaders share it; connects and the check come on top
        return int(sql.service_timeout if sql is not None else DEFAULT_SERVICE_TIMEOUT) + FREEZE_MARGIN

    def _partial_timeouts(self, layout: Layout, options: TaskOptions) -> dict[str, int]:
        return {**self._stop_timeouts(options), "service_timeout": self._service_timeout(layout)}

    def _partial_start_timeouts(self, layout: Layout) -> dict[str, int]:
        return {
            "process_timeout": int(self.config.start.subtask_timeout),
            "step_timeout": int(self.config.engine.step_timeout),
            "service_timeout": self._service_timeout(layout),
        }


def _cluster(layout: Layout) -> tuple[int, str, str]:
    return layout.cluster.id, layout.cluster.name, layout.cluster.status


def _zone(layout: Layout, name: str) -> tuple[Zone, list[ServerRow]]:
    """The zone (name, status) and its servers (id, zone, status), or ZoneNotFound."""
    zone = next((z for z in layout.zones if z[0] == name), None)
    if zone is None:
        raise ZoneNotFound(f"cluster {layout.cluster.id} ({layout.cluster.name}) has no zone {name!r}")
    return zone, [s for s in layout.servers if s[1] == name]


def _server(layout: Layout, server_id: int) -> tuple[ServerRow, Zone, list[ServerRow]]:
    """The server (id, zone, status), its zone (name, status), and the other servers of that zone."""
    server = next((s for s in layout.servers if s[0] == server_id), None)
    if server is None:
        raise NotFound(f"cluster {layout.cluster.id} ({layout.cluster.name}) has no server {server_id}")
    zone, members = _zone(layout, server[1])
    return server, zone, [s for s in members if s[0] != server_id]
