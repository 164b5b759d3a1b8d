"""What each subtask of the start DAG does ("Start OB cluster"). The agent starts each observer the way
observer restarts itself (`cd HOME && ./bin/observer`, its persisted configuration) as the owner of its
home, and answers once it listens and answers SQL; statuses then move back to RUNNING. A server already
running is left running (and not moved through STARTING).
"""

from __future__ import annotations

from obstop.controller.errors import StepFailed
from obstop.controller.states.cluster import ClusterStatus
from obstop.controller.states.server import ServerStatus
from obstop.controller.states.zone import ZoneStatus
from obstop.controller.steps.dag import Step
from obstop.controller.steps.process import Processes, describe_start
from obstop.controller.steps.run import StepRun


class StartSteps:
    def __init__(self, processes: Processes) -> None:
        self.processes = processes

    async def run(self, run: StepRun) -> str:
        match Step(run.step):
            case Step.PREPARE_START_CLUSTER:
                run.move("cluster", run.cluster_id, ClusterStatus.STARTING)
                return f"cluster {run.cluster_id} -> {ClusterStatus.STARTING}"
            case Step.PREPARE_START_ZONE:
                return await self._prepare_zone(run)
            case Step.START_PROCESS:
                srv = run.server(int(run.ctx("server_id")))
                report = await self.processes.start(run, srv)
                if not report.ok:
                    raise StepFailed(f"observer {srv.key} on {srv.host} did not start: {report.reason}")
                return describe_start(report)
            case Step.STARTED_OBSERVER:
                srv = run.server(int(run.ctx("server_id")))
                run.move("server", srv.id, ServerStatus.RUNNING)
                return f"server {srv.key} -> {ServerStatus.RUNNING}"
            case Step.STARTED_ZONE:
                zone = str(run.ctx("zone_name"))
                run.move("zone", run.zone_id(zone), ZoneStatus.RUNNING)
                return f"zone {zone} -> {ZoneStatus.RUNNING}"
            case Step.STARTED_CLUSTER:
                run.move("cluster", run.cluster_id, ClusterStatus.RUNNING)
                return f"cluster {run.cluster_id} -> {ClusterStatus.RUNNING}"
        raise StepFailed(f"the start DAG has no step {run.step}")

    async def _prepare_zone(self, run: StepRun) -> str:
        zone = str(run.ctx("zone_name"))
        statuses = await run.sink.server_statuses(run.cluster_id)
        starting = [
            s for s in run.servers.values() if s.zone == zone and statuses.get(s.id) != ServerStatus.RUNNING
        ]
        for s in starting:
            run.move("server", s.id, ServerStatus.STARTING)
        run.record(moved={str(s.id): statuses.get(s.id) for s in starting})  # what a rollback restores
        if run.ctx("former_zone_status") != ZoneStatus.RUNNING:
            run.move("zone", run.zone_id(zone), ZoneStatus.STARTING)
        return f"zone {zone} -> {ZoneStatus.STARTING}; {len(starting)} server(s) -> {ServerStatus.STARTING}"
