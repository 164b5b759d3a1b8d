"""What each subtask of the stop DAG does. Every step is safe to run again after a crash: status moves
are compare-and-set and idempotent, and process commands keep their id across re-runs of the same run.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from obstop.agent.errors import ExecutorError
from obstop.agent.protocol import ObserverState, ObserverTarget, StopOptions, StopReport
from obstop.controller.config import ControllerConfig
from obstop.controller.dispatch.agentless import Router
from obstop.controller.errors import NotFound, StepFailed
from obstop.controller.states import IllegalTransition
from obstop.controller.states.cluster import ClusterStatus
from obstop.controller.states.server import ServerStatus
from obstop.controller.states.zone import ZoneStatus
from obstop.controller.steps.dag import Step
from obstop.controller.store.core import Claimed, FinishRequest, Store
from obstop.controller.store.models import Server

if TYPE_CHECKING:
    from obstop.controller.engine.writer import Writer


class Preparation(Protocol):
    """The seam for graceful cluster-level preparation (minor freeze, checkpoint wait) before kills."""

    async def prepare_cluster(self, run: StepRun) -> None: ...

    async def prepare_server(self, run: StepRun, server: Server) -> None: ...


class NoPreparation:
    async def prepare_cluster(self, run: StepRun) -> None:
        return None

    async def prepare_server(self, run: StepRun, server: Server) -> None:
        return None


class StepRun:
    """One execution of one subtask: its claim, and a log that lands in the subtask's log."""

    def __init__(
        self,
        store: Store,
        writer: Writer,
        claimed: Claimed,
        cluster_id: int,
        deadline: float,
        task_context: dict[str, Any],
        servers: Mapping[int, Server],
        zones: Mapping[str, int],
    ) -> None:
        self.store = store
        self.writer = writer
        self.claimed = claimed
        self.cluster_id = cluster_id
        self.deadline = deadline  # time.monotonic() by which a remote call must have answered
        self.task_context = task_context
        self._servers = servers
        self._zones = zones
        # committed with the subtask's finish, in the same transaction
        self.result: dict[str, Any] | None = None
        self.moves: list[tuple[str, int, str]] = []  # (cluster | zone | server, id, wanted status)
        self.command_result: tuple[str, dict[str, Any]] | None = None

    def server(self, server_id: int) -> Server:
        """The server's address facts (fixed while the task runs); its status lives in the store."""
        try:
            return self._servers[server_id]
        except KeyError:
            raise NotFound(f"no server {server_id} in cluster {self.cluster_id}") from None

    def zone_id(self, name: str) -> int:
        try:
            return self._zones[name]
        except KeyError:
            raise NotFound(f"cluster {self.cluster_id} has no zone {name}") from None

    def finish_request(self, owner: str, ok: bool, line: str) -> FinishRequest:
        return FinishRequest(
            self.claimed.id,
            owner,
            ok,
            line,
            self.result,
            tuple(self.moves) if ok else (),
            self.command_result,
        )

    def option(self, key: str, default: str) -> str:
        """A stop option recorded in the task context (freeze, freeze_timeout_seconds, force)."""
        return str(self.task_context.get("stringMap", {}).get(key, default))

    @property
    def task_id(self) -> int:
        return self.claimed.task_id

    def ctx(self, key: str) -> Any:
        return self.claimed.context.get(key)

    async def log(self, line: str) -> None:
        stamp = datetime.now(UTC).astimezone().isoformat(timespec="milliseconds")
        self.writer.log(self.claimed.id, f"{stamp} {line}")

    @property
    def command_id(self) -> str:
        # stable across controller restarts within one run; a retry (new run) gets a new id
        c = self.claimed
        return f"obstop-{self.store.id}-t{c.task_id}-s{c.id}-r{c.run_time}"


class StopSteps:
    def __init__(
        self, store: Store, router: Router, config: ControllerConfig, preparation: Preparation | None = None
    ) -> None:
        self.store = store
        self.router = router
        self.config = config
        self.preparation = preparation or NoPreparation()

    @property
    def stop_options(self) -> StopOptions:
        c = self.config.stop
        return StopOptions(
            signal=c.signal,
            term_timeout=c.term_timeout,
            kill_timeout=c.kill_timeout,
            port_timeout=c.port_timeout,
        )

    async def run(self, run: StepRun) -> str:
        """Run the step; returns the line that closes its log. Raises StepFailed with the reason."""
        step = Step(run.claimed.step)
        try:
            match step:
                case Step.WAIT:
                    return "upstreams done"
                case Step.PREPARE_CLUSTER:
                    return await self._prepare_cluster(run)
                case Step.PREPARE_ZONE:
                    return await self._zone(run, ZoneStatus.STOPPING)
                case Step.PREPARE_OBSERVER:
                    return await self._prepare_observer(run)
                case Step.STOP_PROCESS:
                    return await self._stop_process(run)
                case Step.UPDATE_OBSERVER:
                    srv = run.server(int(run.ctx("server_id")))
                    run.moves.append(("server", srv.id, ServerStatus.PROCESS_STOPPED))
                    return f"server {srv.ip}:{srv.rpc_port} -> {ServerStatus.PROCESS_STOPPED}"
                case Step.UPDATE_ZONE:
                    return await self._zone(run, ZoneStatus.STOPPED)
                case Step.UPDATE_CLUSTER:
                    run.moves.append(("cluster", run.cluster_id, ClusterStatus.STOPPED))
                    return f"cluster {run.cluster_id} -> {ClusterStatus.STOPPED}"
        except (IllegalTransition, NotFound) as exc:
            raise StepFailed(str(exc)) from exc
        except ExecutorError as exc:
            raise StepFailed(str(exc)) from exc

    async def _prepare_cluster(self, run: StepRun) -> str:
        former = await self.store.move_cluster(run.task_id, run.cluster_id, ClusterStatus.STOPPING)
        await run.log(f"cluster {run.cluster_id}: {former} -> {ClusterStatus.STOPPING}")
        await self.preparation.prepare_cluster(run)
        return "cluster prepared"

    async def _zone(self, run: StepRun, wanted: ZoneStatus) -> str:
        zone = str(run.ctx("zone_name"))
        run.moves.append(("zone", run.zone_id(zone), wanted))
        return f"zone {zone} -> {wanted}"

    async def _prepare_observer(self, run: StepRun) -> str:
        srv = run.server(int(run.ctx("server_id")))
        target = _target(srv)
        dispatcher = self.router.for_host(srv.host)
        # the subtask's own timeout also covers the freeze wait; the probe keeps the process bound
        probe_deadline = min(run.deadline, time.monotonic() + self.config.stop.subtask_timeout * 0.9)
        report = await dispatcher.probe(run.command_id, target, run.log, probe_deadline)
        await run.log(
            f"probe of {srv.host}:{srv.home_path}: {report.state}"
            + (f" pid {report.pid}" if report.pid else "")
            + (f" ({report.reason})" if report.reason else "")
            + (" (stale pid file)" if report.stale_pid_file else "")
        )
        if report.state is ObserverState.REFUSED:
            raise StepFailed(f"observer {srv.ip}:{srv.rpc_port} on {srv.host} refused: {report.reason}")
        await self.preparation.prepare_server(run, srv)
        run.moves.append(("server", srv.id, ServerStatus.PROCESS_STOPPING))
        return f"server {srv.ip}:{srv.rpc_port} -> {ServerStatus.PROCESS_STOPPING}"

    async def _stop_process(self, run: StepRun) -> str:
        srv = run.server(int(run.ctx("server_id")))
        dispatcher = self.router.for_host(srv.host)
        command_id = run.command_id
        # committed before the command is sent: a resumed run re-sends this id, never a new one
        recorded = await run.writer.command_begin(command_id, run.claimed.id, srv.host, "stop_observer")
        if recorded is not None:
            report = StopReport.model_validate(recorded)
            await run.log(f"command {command_id} already has a result; not sending it again")
        else:
            await run.log(
                f"command {command_id}: stop observer {srv.home_path} on {srv.host} "
                f"({srv.ip}:{srv.sql_port}/{srv.rpc_port})"
            )
            report = await dispatcher.stop(command_id, _target(srv), self.stop_options, run.log, run.deadline)
            run.command_result = (command_id, report.model_dump(mode="json"))
        if not report.ok:
            raise StepFailed(f"observer {srv.ip}:{srv.rpc_port} on {srv.host}: {report.reason}")
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


def _target(srv: Server) -> ObserverTarget:
    return ObserverTarget(
        host=srv.host, ip=srv.ip, home_path=srv.home_path, sql_port=srv.sql_port, rpc_port=srv.rpc_port
    )
