"""What each subtask of the stop DAG does. Every step is safe to run again after a crash: its status moves
commit with its finish (compare-and-set), and a process command keeps its id across re-runs of one run.
"""

from __future__ import annotations

import time

from obstop.agent.errors import ExecutorError
from obstop.agent.protocol import ObserverState, ObserverTarget, StopOptions, StopReport
from obstop.controller.config import StopConfig
from obstop.controller.dispatch import Router
from obstop.controller.errors import NotFound, StepFailed
from obstop.controller.states import IllegalTransition
from obstop.controller.states.cluster import ClusterStatus
from obstop.controller.states.server import ServerStatus
from obstop.controller.states.zone import ZoneStatus
from obstop.controller.steps.dag import Step
from obstop.controller.steps.freeze import Preparation
from obstop.controller.steps.run import ServerFacts, StepRun


def target(srv: ServerFacts) -> ObserverTarget:
    return ObserverTarget(
        host=srv.host, ip=srv.ip, home_path=srv.home_path, sql_port=srv.sql_port, rpc_port=srv.rpc_port
    )


class StopSteps:
    def __init__(self, router: Router, config: StopConfig, preparation: Preparation) -> None:
        self.router = router
        self.config = config
        self.preparation = preparation
        self.process_options = StopOptions(
            signal=config.signal,
            term_timeout=config.term_timeout,
            kill_timeout=config.kill_timeout,
            port_timeout=config.port_timeout,
        )

    async def run(self, run: StepRun) -> str:
        """Run the step; returns the line that closes its log. Raises StepFailed with the reason."""
        try:
            match Step(run.step):
                case Step.WAIT:
                    return "upstreams done"
                case Step.PREPARE_CLUSTER:
                    return await self._prepare_cluster(run)
                case Step.PREPARE_ZONE:
                    return self._zone(run, ZoneStatus.STOPPING)
                case Step.PREPARE_OBSERVER:
                    return await self._prepare_observer(run)
                case Step.STOP_PROCESS:
                    return await self._stop_process(run)
                case Step.UPDATE_OBSERVER:
                    srv = run.server(int(run.ctx("server_id")))
                    run.move("server", srv.id, ServerStatus.PROCESS_STOPPED)
                    return f"server {srv.key} -> {ServerStatus.PROCESS_STOPPED}"
                case Step.UPDATE_ZONE:
                    return self._zone(run, ZoneStatus.STOPPED)
                case Step.UPDATE_CLUSTER:
                    run.move("cluster", run.cluster_id, ClusterStatus.STOPPED)
                    return f"cluster {run.cluster_id} -> {ClusterStatus.STOPPED}"
        except (IllegalTransition, NotFound, ExecutorError) as exc:
            raise StepFailed(str(exc)) from exc

    async def _prepare_cluster(self, run: StepRun) -> str:
        await self.preparation.prepare_cluster(run)
        run.move("cluster", run.cluster_id, ClusterStatus.STOPPING)
        return f"cluster {run.cluster_id} -> {ClusterStatus.STOPPING}"

    def _zone(self, run: StepRun, wanted: ZoneStatus) -> str:
        zone = str(run.ctx("zone_name"))
        run.move("zone", run.zone_id(zone), wanted)
        return f"zone {zone} -> {wanted}"

    async def _prepare_observer(self, run: StepRun) -> str:
        srv = run.server(int(run.ctx("server_id")))
        dispatcher = self.router.for_host(srv.host)
        # the subtask's own timeout also covers the freeze wait; the probe keeps the process bound
        probe_deadline = min(run.deadline, time.monotonic() + self.config.subtask_timeout * 0.9)
        report = await dispatcher.probe(run.command_id, target(srv), run.log, probe_deadline)
        await run.log(
            f"probe of {srv.host}:{srv.home_path}: {report.state}"
            + (f" pid {report.pid}" if report.pid else "")
            + (f" ({report.reason})" if report.reason else "")
            + (" (stale pid file)" if report.stale_pid_file else "")
        )
        if report.state is ObserverState.REFUSED:
            raise StepFailed(f"observer {srv.key} on {srv.host} refused: {report.reason}")
        await self.preparation.prepare_server(run, srv)
        run.move("server", srv.id, ServerStatus.PROCESS_STOPPING)
        return f"server {srv.key} -> {ServerStatus.PROCESS_STOPPING}"

    async def _stop_process(self, run: StepRun) -> str:
        srv = run.server(int(run.ctx("server_id")))
        dispatcher = self.router.for_host(srv.host)
        command_id = run.command_id
        # committed before the command is sent: a resumed run re-sends this id, never a new one
        recorded = await run.sink.command_begin(command_id, run.subtask_id, srv.host, "stop_observer")
        if recorded is not None:
            report = StopReport.model_validate(recorded)
            await run.log(f"command {command_id} already has a result; not sending it again")
        else:
            await run.log(
                f"command {command_id}: stop observer {srv.home_path} on {srv.host} "
                f"({srv.ip}:{srv.sql_port}/{srv.rpc_port})"
            )
            report = await dispatcher.stop(
                command_id, target(srv), self.process_options, run.log, run.deadline
            )
            run.command_result = (command_id, report.model_dump(mode="json"))
        if not report.ok:
            raise StepFailed(f"observer {srv.key} on {srv.host}: {report.reason}")
        if report.already_stopped:
            return f"observer on {srv.host} was already stopped" + (
                "; stale pid file removed" if report.pid_file_removed else ""
            )
        exit_ms = (report.time_to_exit_s or 0) * 1000
        free_ms = (report.time_to_ports_free_s or 0) * 1000
        return (
            f"observer pid {report.pid} on {srv.host} stopped with {' then '.join(report.signals)}: "
            f"exited after {exit_ms:.0f} ms, ports free after {free_ms:.0f} ms"
        )
