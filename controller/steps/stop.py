"""What each subtask of the stop DAG does. Every step is safe to run again after a crash: its status moves
commit with its finish (compare-and-set), and a process command keeps its id across re-runs of one run.
A server or zone already stopped (a cluster partly stopped before) keeps its status rather than moving
backwards.
"""

from __future__ import annotations

import time

from obstop.agent.protocol import ObserverState
from obstop.controller.config import StopConfig
from obstop.controller.errors import StepFailed
from obstop.controller.states.cluster import ClusterStatus
from obstop.controller.states.server import ServerStatus
from obstop.controller.states.zone import ZoneStatus
from obstop.controller.steps.dag import Step, node_of
from obstop.controller.steps.freeze import Preparation
from obstop.controller.steps.process import Processes, describe_stop
from obstop.controller.steps.run import StepRun


class StopSteps:
    def __init__(self, processes: Processes, config: StopConfig, preparation: Preparation) -> None:
        self.processes = processes
        self.config = config
        self.preparation = preparation

    async def run(self, run: StepRun) -> str:
        """Run the step; returns the line that closes its log. Raises StepFailed with the reason."""
        match Step(run.step):
            case Step.PREPARE_CLUSTER:
                await self.preparation.prepare_cluster(run)
                run.move("cluster", run.cluster_id, ClusterStatus.STOPPING)
                return f"cluster {run.cluster_id} -> {ClusterStatus.STOPPING}"
            case Step.PREPARE_ZONE:
                return self._zone(run, ZoneStatus.STOPPING)
            case Step.PREPARE_OBSERVER:
                return await self._prepare_observer(run)
            case Step.STOP_PROCESS:
                srv = run.server(int(run.ctx("server_id")))
                report = await self.processes.stop(run, srv)
                if not report.ok:
                    raise StepFailed(f"observer {srv.key} on {srv.host}: {report.reason}")
                return describe_stop(report)
            case Step.UPDATE_OBSERVER:
                return await self._update_observer(run)
            case Step.UPDATE_ZONE:
                zone = str(run.ctx("zone_name"))
                ids = [s.id for s in run.servers.values() if s.zone == zone]
                wanted = ZoneStatus(await self._all_stopped(run, ids, ZoneStatus.STOPPED))
                run.move("zone", run.zone_id(zone), wanted)
                return f"zone {zone} -> {wanted}"
            case Step.UPDATE_CLUSTER:
                wanted_c = ClusterStatus(
                    await self._all_stopped(run, list(run.servers), ClusterStatus.STOPPED)
                )
                run.move("cluster", run.cluster_id, wanted_c)
                return f"cluster {run.cluster_id} -> {wanted_c}"
        raise StepFailed(f"the stop DAG has no step {run.step}")

    def _zone(self, run: StepRun, wanted: ZoneStatus) -> str:
        zone = str(run.ctx("zone_name"))
        if wanted is ZoneStatus.STOPPING and run.ctx("former_zone_status") == ZoneStatus.STOPPED:
            return f"zone {zone} is already {ZoneStatus.STOPPED}"
        run.move("zone", run.zone_id(zone), wanted)
        return f"zone {zone} -> {wanted}"

    async def _prepare_observer(self, run: StepRun) -> str:
        srv = run.server(int(run.ctx("server_id")))
        # the subtask's own timeout also covers the freeze wait; the probe keeps the process bound
        probe_deadline = min(run.deadline, time.monotonic() + self.config.subtask_timeout * 0.9)
        report = await self.processes.probe(run, srv, probe_deadline)
        await run.log(
            f"probe of {srv.host}:{srv.home_path}: {report.state}"
            + (f" pid {report.pid}" if report.pid else "")
            + (f" ({report.reason})" if report.reason else "")
            + (" (stale pid file)" if report.stale_pid_file else "")
        )
        run.record(probe={"state": report.state, "pid": report.pid, "start_time": report.start_time})
        if report.state is ObserverState.REFUSED:
            raise StepFailed(f"observer {srv.key} on {srv.host} refused: {report.reason}")
        await self.preparation.prepare_server(run, srv)
        # its status when the task began (no one else moves it while the task holds the cluster)
        status = run.ctx("former_server_status")
        if status == ServerStatus.PROCESS_STOPPED and report.state is ObserverState.STOPPED:
            return f"server {srv.key} is already {ServerStatus.PROCESS_STOPPED}"
        run.move("server", srv.id, ServerStatus.PROCESS_STOPPING)
        return f"server {srv.key} -> {ServerStatus.PROCESS_STOPPING}"

    async def _update_observer(self, run: StepRun) -> str:
        srv = run.server(int(run.ctx("server_id")))
        stops = await run.sink.stage_results(run.task_id, "stop_process")
        found = (stops.get(node_of(run.node, "stop_process")) or {}).get("stop")
        if found is None or not found.get("ok"):
            # its stop was skipped by an operator: the status says what a probe finds, never more
            report = await self.processes.probe(run, srv)
            if report.state is not ObserverState.STOPPED:
                await run.log(f"its stop did not succeed (skipped), and the observer is {report.state}")
                run.move("server", srv.id, ServerStatus.UNAVAILABLE)
                return f"server {srv.key} -> {ServerStatus.UNAVAILABLE} (its stop was skipped)"
        run.move("server", srv.id, ServerStatus.PROCESS_STOPPED)
        return f"server {srv.key} -> {ServerStatus.PROCESS_STOPPED}"

    async def _all_stopped(self, run: StepRun, ids: list[int], stopped: str) -> str:
        """STOPPED when each of these servers is PROCESS_STOPPED; else UNAVAILABLE (a skipped stop)."""
        statuses = await run.sink.server_statuses(run.cluster_id)
        if all(statuses.get(i) == ServerStatus.PROCESS_STOPPED for i in ids):
            return stopped
        return "UNAVAILABLE"
