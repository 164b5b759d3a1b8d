"""What rolling back each subtask does (OCP: the DAG is walked backwards, each subtask undoing its own
effect once everything after it is undone). Status moves go back to what the task recorded
(`former_cluster_status`, and each zone's and server's `former_*_status`); a process goes back to how
this task found it: an observer this task stopped is started again, one it launched is stopped again,
and one it did not touch is left alone. Each action is idempotent (a probe first; commands by id), so a
rollback resumed after a crash never acts twice.
"""

from __future__ import annotations

from obstop.agent.protocol import ObserverState
from obstop.controller.errors import StepFailed
from obstop.controller.states.cluster import of_servers
from obstop.controller.states.server import ServerStatus
from obstop.controller.steps.dag import Step, node_of
from obstop.controller.steps.process import Processes, describe_start, describe_stop
from obstop.controller.steps.run import ServerFacts, StepRun


class RollbackSteps:
    def __init__(self, processes: Processes) -> None:
        self.processes = processes

    async def run(self, run: StepRun) -> str:
        match Step(run.step):
            case Step.PREPARE_CLUSTER | Step.PREPARE_START_CLUSTER:
                now = str(of_servers((await run.sink.server_statuses(run.cluster_id)).values()))
                return self._back(
                    run, "cluster", run.cluster_id, run.task_string("former_cluster_status"), now
                )
            case Step.PREPARE_ZONE:
                return await self._zone_back(run)
            case Step.PREPARE_START_ZONE:
                return await self._start_zone_back(run)
            case Step.PREPARE_OBSERVER:
                srv = run.server(int(run.ctx("server_id")))
                state = await self._probe(run, srv)  # this step never touched the process: say what it is
                found = (
                    ServerStatus.RUNNING if state is ObserverState.RUNNING else ServerStatus.PROCESS_STOPPED
                )
                return self._back(run, "server", srv.id, run.ctx("former_server_status"), found)
            case Step.STOP_PROCESS:
                return await self._start_again(run)
            case Step.START_PROCESS:
                return await self._stop_again(run)
            case _:
                return "nothing to undo here (statuses go back with the stages before it)"

    def _back(self, run: StepRun, entity: str, ident: int, former: object, now: str) -> str:
        """Back to the former status when what is found now agrees; else what is found (it changed
        outside obstop meanwhile): a rollback never makes a status claim more than is true."""
        wanted = str(former) if former is not None and str(former) == now else now
        run.move(entity, ident, wanted)
        if wanted == str(former):
            return f"{entity} {ident} -> {wanted} (its status before this task)"
        return f"{entity} {ident} -> {wanted} (it was {former} before this task, but is {now} now)"

    async def _zone_back(self, run: StepRun, changed: dict[int, str] | None = None) -> str:
        zone = str(run.ctx("zone_name"))
        statuses = {**(await run.sink.server_statuses(run.cluster_id)), **(changed or {})}
        now = str(of_servers(statuses.get(s.id, "") for s in run.servers.values() if s.zone == zone))
        return self._back(run, "zone", run.zone_id(zone), run.ctx("former_zone_status"), now)

    async def _start_zone_back(self, run: StepRun) -> str:
        # servers this zone's preparation moved to STARTING whose start never ran: back as they were
        moved: dict[str, str] = (run.previous or {}).get("moved", {})
        statuses = await run.sink.server_statuses(run.cluster_id)
        back = {
            int(sid): old for sid, old in moved.items() if statuses.get(int(sid)) == ServerStatus.STARTING
        }
        for sid, old in back.items():
            run.move("server", sid, old)
        line = await self._zone_back(run, back)
        return line + (f"; {len(back)} server(s) back to their former status" if back else "")

    async def _start_again(self, run: StepRun) -> str:
        """Undo a stop: start the observer again, only if this task stopped it."""
        srv = run.server(int(run.ctx("server_id")))
        found = (run.previous or {}).get("stop")
        if found is not None:
            signals = [str(s) for s in found.get("signals") or []]
            if not signals:
                why = "it was already stopped" if found.get("already_stopped") else "no signal was sent to it"
                return f"observer on {srv.host} not started: this task did not stop it ({why})"
            await run.log(
                f"this task stopped pid {found.get('pid')} ({' then '.join(signals)}); starting it again"
            )
        else:
            # no outcome recorded (an agent lost, a cancel): it is ours if it ran when this task began
            prepared = await run.sink.node_result(run.task_id, node_of(run.node, "prepare_observer"))
            if ((prepared or {}).get("probe") or {}).get("state") != ObserverState.RUNNING:
                return f"observer on {srv.host} not started: it was not running when this task began"
            await run.log("this stop has no recorded outcome, and the observer ran when the task began")
        # the start probes first: an observer running again (started by someone, or by this very run
        # before a crash: same command id) is not launched twice
        started = await self.processes.start(run, srv)
        if not started.ok:
            raise StepFailed(f"observer {srv.key} on {srv.host} did not start again: {started.reason}")
        run.move("server", srv.id, ServerStatus.RUNNING)
        return "started again: " + describe_start(started)

    async def _stop_again(self, run: StepRun) -> str:
        """Undo a start: stop the observer again, only if this task launched it."""
        srv = run.server(int(run.ctx("server_id")))
        former = str(run.ctx("former_server_status") or ServerStatus.PROCESS_STOPPED)
        found = (run.previous or {}).get("start")
        # no outcome recorded: it is ours if it did not run before this task
        ours = bool(found.get("launched")) if found is not None else former != ServerStatus.RUNNING
        if not ours:
            state = await self._probe(run, srv)
            observed = (
                ServerStatus.RUNNING if state == ObserverState.RUNNING else ServerStatus.PROCESS_STOPPED
            )
            run.move("server", srv.id, observed)
            return f"observer on {srv.host} not stopped: this task did not launch it"
        stopped = await self.processes.stop(run, srv)  # a stopped one is reported already stopped
        if not stopped.ok:
            raise StepFailed(f"observer {srv.key} on {srv.host} did not stop again: {stopped.reason}")
        run.move("server", srv.id, ServerStatus.PROCESS_STOPPED)
        return "stopped again: " + describe_stop(stopped)

    async def _probe(self, run: StepRun, srv: ServerFacts) -> ObserverState:
        report = await self.processes.probe(run, srv)
        await run.log(
            f"probe of {srv.host}:{srv.home_path}: {report.state}"
            + (f" pid {report.pid}" if report.pid else "")
            + (f" ({report.reason})" if report.reason else "")
        )
        if report.state is ObserverState.REFUSED:
            raise StepFailed(f"observer {srv.key} on {srv.host} refused: {report.reason}")
        return report.state
