"""Stopping and starting one observer process through its dispatcher, as a step (forward or rollback)
does it: the command is recorded by id before it is sent, a recorded result is never sent again, and
its report is recorded with the subtask (a rollback reads it to know what this task did)."""

from __future__ import annotations

import time

from obstop.agent.protocol import (
    CancelReport,
    ObserverTarget,
    ProbeReport,
    StartOptions,
    StartReport,
    StopOptions,
    StopReport,
)
from obstop.controller.config import StartConfig, StopConfig
from obstop.controller.dispatch import Router
from obstop.controller.steps.run import ServerFacts, StepRun

CANCEL_WAIT = 10.0  # seconds a cancel waits for the agent's word before the subtask ends anyway


def target(srv: ServerFacts) -> ObserverTarget:
    return ObserverTarget(
        host=srv.host, ip=srv.ip, home_path=srv.home_path, sql_port=srv.sql_port, rpc_port=srv.rpc_port
    )


class Processes:
    def __init__(self, router: Router, stop: StopConfig, start: StartConfig) -> None:
        self.router = router
        self.stop_options = StopOptions(
            signal=stop.signal,
            term_timeout=stop.term_timeout,
            kill_timeout=stop.kill_timeout,
            port_timeout=stop.port_timeout,
        )
        self.start_options = StartOptions(
            launch_timeout=start.launch_timeout, ready_timeout=start.ready_timeout
        )

    async def probe(self, run: StepRun, srv: ServerFacts, deadline: float | None = None) -> ProbeReport:
        """A probe has its own id: the run's command id is for the stop or start it may send next."""
        dispatcher = self.router.for_host(srv.host)
        return await dispatcher.probe(
            f"{run.command_id}.probe", target(srv), run.log, deadline or run.deadline
        )

    async def stop(self, run: StepRun, srv: ServerFacts) -> StopReport:
        command_id = run.command_id
        # committed before the command is sent: a resumed run re-sends this id, never a new one
        recorded = await run.sink.command_begin(command_id, run.subtask_id, srv.host, "stop_observer")
        if recorded is not None:
            await run.log(f"command {command_id} already has a result; not sending it again")
            report = StopReport.model_validate(recorded)
        else:
            await run.log(
                f"command {command_id}: stop observer {srv.home_path} on {srv.host} "
                f"({srv.ip}:{srv.sql_port}/{srv.rpc_port})"
            )
            report = await self.router.for_host(srv.host).stop(
                command_id, target(srv), self.stop_options, run.log, run.deadline
            )
            run.command_result = (command_id, report.model_dump(mode="json"))
        # what a rollback needs to know: did this task signal it (the full report is the command's)
        run.record(
            stop={
                "ok": report.ok,
                "already_stopped": report.already_stopped,
                "pid": report.pid,
                "signals": report.signals,
            }
        )
        return report

    async def start(self, run: StepRun, srv: ServerFacts) -> StartReport:
        command_id = run.command_id
        recorded = await run.sink.command_begin(command_id, run.subtask_id, srv.host, "start_observer")
        if recorded is not None:
            await run.log(f"command {command_id} already has a result; not sending it again")
            report = StartReport.model_validate(recorded)
        else:
            await run.log(
                f"command {command_id}: start observer {srv.home_path} on {srv.host} "
                f"(cd {srv.home_path} && ./bin/observer; then {srv.ip}:{srv.sql_port}/{srv.rpc_port})"
            )
            report = await self.router.for_host(srv.host).start(
                command_id, target(srv), self.start_options, run.log, run.deadline
            )
            run.command_result = (command_id, report.model_dump(mode="json"))
        run.record(
            start={
                "ok": report.ok,
                "launched": report.launched,
                "already_running": report.already_running,
                "pid": report.pid,
            }
        )
        return report

    async def cancel(self, run: StepRun, srv: ServerFacts) -> CancelReport:
        """Cancel this run's command where it runs (bounded): it never signals or launches after this."""
        deadline = time.monotonic() + CANCEL_WAIT
        return await self.router.for_host(srv.host).cancel(run.command_id, target(srv), run.log, deadline)


def describe_stop(report: StopReport) -> str:
    if report.already_stopped:
        return f"observer on {report.host} was already stopped" + (
            "; stale pid file removed" if report.pid_file_removed else ""
        )
    exit_ms = (report.time_to_exit_s or 0) * 1000
    free_ms = (report.time_to_ports_free_s or 0) * 1000
    return (
        f"observer pid {report.pid} on {report.host} stopped with {' then '.join(report.signals)}: "
        f"exited after {exit_ms:.0f} ms, ports free after {free_ms:.0f} ms"
    )


def describe_start(report: StartReport) -> str:
    if report.already_running:
        return f"observer pid {report.pid} on {report.host} was already running"
    ready_ms = (report.time_to_ready_s or 0) * 1000
    return (
        f"observer pid {report.pid} on {report.host} started as {report.user}: listening and answering SQL "
        f"after {ready_ms:.0f} ms"
    )
