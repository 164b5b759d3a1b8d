"""The engine's runner for every DAG: a subtask runs its step forward (stop, start, the partial stops) or
its rollback action, by its operation; and the cancel of a running subtask reaches the command it has
out."""

from __future__ import annotations

from collections.abc import Sequence

from obstop.agent.errors import ExecutorError
from obstop.controller.config import ClusterSQLConfig, StartConfig, StopConfig
from obstop.controller.dispatch import Router
from obstop.controller.errors import NotFound, StepFailed
from obstop.controller.states import IllegalTransition
from obstop.controller.states.subtask import Operation
from obstop.controller.steps.dag import PARTIAL_STEPS, Step
from obstop.controller.steps.freeze import Preparation
from obstop.controller.steps.partial import PartialSteps
from obstop.controller.steps.process import Processes
from obstop.controller.steps.rollback import RollbackSteps
from obstop.controller.steps.run import StepRun
from obstop.controller.steps.start import StartSteps
from obstop.controller.steps.stop import StopSteps

STOP_STEPS = frozenset(
    {
        Step.PREPARE_CLUSTER,
        Step.PREPARE_ZONE,
        Step.PREPARE_OBSERVER,
        Step.STOP_PROCESS,
        Step.UPDATE_OBSERVER,
        Step.UPDATE_ZONE,
        Step.UPDATE_CLUSTER,
    }
)
PROCESS_STEPS = frozenset({Step.STOP_PROCESS, Step.START_PROCESS})


class Steps:
    def __init__(
        self,
        router: Router,
        stop: StopConfig,
        start: StartConfig,
        preparation: Preparation,
        cluster_sql: Sequence[ClusterSQLConfig] = (),
    ) -> None:
        self.processes = Processes(router, stop, start)
        self.stop = StopSteps(self.processes, stop, preparation)
        self.start = StartSteps(self.processes)
        self.rollback = RollbackSteps(self.processes)
        self.partial = PartialSteps(cluster_sql, preparation)

    async def run(self, run: StepRun) -> str:
        """Run the subtask; returns the line that closes its log. Raises StepFailed with the reason."""
        try:
            step = Step(run.step)
            if step is Step.WAIT:
                return "upstreams done" if run.operation != Operation.ROLLBACK else "downstreams rolled back"
            if step in PARTIAL_STEPS:
                if run.operation == Operation.ROLLBACK:
                    return await self.partial.rollback(run)
                return await self.partial.run(run)
            if run.operation == Operation.ROLLBACK:
                return await self.rollback.run(run)
            if step in STOP_STEPS:
                return await self.stop.run(run)
            return await self.start.run(run)
        except (IllegalTransition, NotFound, ExecutorError, ValueError) as exc:
            raise StepFailed(str(exc)) from exc

    async def cancel(self, run: StepRun) -> str:
        """Before the engine interrupts a subtask: cancel the command it has out, where it runs (journalled
        there first: no signal, no launch after it). Answers what happened, for its log."""
        if Step(run.step) not in PROCESS_STEPS:
            return "cancelled by the operator"
        srv = run.server(int(run.ctx("server_id")))
        try:
            report = await self.processes.cancel(run, srv)
        except (StepFailed, ExecutorError) as exc:
            msg = exc.message if isinstance(exc, StepFailed) else str(exc)
            return f"cancelled by the operator; the cancel of command {run.command_id} got no answer: {msg}"
        return f"cancelled by the operator; on {srv.host}: {report.detail}"
