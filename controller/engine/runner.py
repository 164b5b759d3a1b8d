"""The durable, event-driven engine: a stage starts the moment the one before it ends.

Claimed subtasks are leases. On start the engine takes back every RUNNING subtask it owned (it was
restarted), and every lease/5 s every RUNNING subtask whose lease expired (another controller died), and
runs its step again: steps are idempotent, and the stop command keeps its id. A subtask whose lease this
engine lost (another controller took it over while this one could not renew) is dropped here: its step
stops and its outcome is not written (finishes are compare-and-set on the lease owner anyway). Outcomes
are written under `asyncio.shield`, so a shutdown cannot lose one that was decided.

A subtask runs its step forward, or its rollback action (operation ROLLBACK); one an operator skipped
(SKIP, ROLLBACK_SKIP) is completed without running anything. One an operator cancels (CANCELING) has its
command cancelled where it runs, then its step is interrupted, and it ends FAILED (CANCEL). When a task
ends, `on_task_end` is told its cluster (statuses are then reconciled with what the servers really are).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import structlog

from obstop.controller.engine.writer import Writer
from obstop.controller.errors import StepFailed
from obstop.controller.metrics import NULL, Metrics
from obstop.controller.states.subtask import BACKWARD, SKIPPED, Operation, SubtaskStatus
from obstop.controller.states.task import TaskStatus
from obstop.controller.steps.run import ServerFacts, StepRun
from obstop.controller.store import Claimed, ClaimRequest, FinishRequest, Handoff, LeaseLost, Store
from obstop.controller.store.db import store_cause, store_failure

log = logging.getLogger("obstop.engine")

Runner = Callable[[StepRun], Awaitable[str]]
Canceller = Callable[[StepRun], Awaitable[str]]
CANCEL_BOUND = 15.0  # seconds the cancel of a command may take before the subtask ends anyway


@dataclass
class _Running:
    run: StepRun
    step: asyncio.Task[str] | None = None
    cancel_line: str | None = None  # set once an operator's cancel has reached the step
    lost: bool = False  # another controller holds its lease now: it is no longer ours to finish


@dataclass(frozen=True)
class _TaskFacts:
    """What every step of a task needs, read once: fixed while it runs."""

    cluster_id: int
    context: dict[str, Any]
    servers: dict[int, ServerFacts]
    zones: dict[str, int]


class _Sink:
    """The engine's side of the steps' StepSink."""

    def __init__(self, store: Store, writer: Writer) -> None:
        self.store = store
        self.writer = writer
        self._stages: dict[tuple[int, str], asyncio.Future[dict[str, dict[str, Any] | None]]] = {}

    def log(self, subtask_id: int, line: str) -> None:
        self.writer.log(subtask_id, line)

    async def command_begin(
        self, command_id: str, subtask_id: int, agent_id: str, kind: str
    ) -> dict[str, Any] | None:
        return await self.writer.command_begin(command_id, subtask_id, agent_id, kind)

    async def node_result(self, task_id: int, node: str) -> dict[str, Any] | None:
        return await self.store.tasks.node_result(task_id, node)

    async def stage_results(self, task_id: int, stage: str) -> dict[str, dict[str, Any] | None]:
        # a thousand servers' next stage asks at once: one read answers them all
        key = (task_id, stage)
        if key not in self._stages:
            self._stages[key] = asyncio.ensure_future(self.store.tasks.stage_results(task_id, stage))
        try:
            return await asyncio.shield(self._stages[key])
        except Exception:
            self._stages.pop(key, None)
            raise

    def forget(self, task_id: int) -> None:
        """The task ended: what its stages recorded may change (a retry, a rollback)."""
        for key in [k for k in self._stages if k[0] == task_id]:
            self._stages.pop(key, None)

    async def server_statuses(self, cluster_id: int) -> dict[int, str]:
        return await self.store.clusters.server_statuses(cluster_id)


class Engine:
    def __init__(
        self,
        store: Store,
        runner: Runner,
        *,
        canceller: Canceller | None = None,
        owner: str,
        lease: float = 30.0,
        max_concurrency: int = 512,
        poll_interval: float = 5.0,
        drain_timeout: float = 10.0,
    ) -> None:
        self.store = store
        self.runner = runner
        self.canceller = canceller
        self.owner = owner
        self.lease = lease
        self.max_concurrency = max_concurrency
        self.poll_interval = poll_interval
        self.drain_timeout = drain_timeout
        self.reclaim_interval = lease / 5  # how soon a dead controller's subtasks are taken over
        self._wake = asyncio.Event()
        self._running: dict[int, asyncio.Task[None]] = {}
        self._task_events: dict[int, asyncio.Event] = {}
        self._tasks: dict[int, _TaskFacts] = {}
        self._steps: dict[int, _Running] = {}
        self._tg: asyncio.TaskGroup | None = None
        self.on_task_end: Callable[[int], None] | None = None  # told the cluster of a task that ended
        self.writer = Writer(store)
        self.writer.claimer = self._claim_request  # the next stage is claimed with the finishes
        self.writer.on_handoff = self._on_handoff
        self._saturated = False  # the last claim took as many as it could: a freed slot may take more
        self.sink = _Sink(store, self.writer)
        self.started = asyncio.Event()
        self.metrics: Metrics = NULL

    def wake(self) -> None:
        self._wake.set()

    def cancel(self, subtask_id: int) -> bool:
        """An operator cancelled this subtask (it is CANCELING in the store): interrupt it, if it runs here.
        Another controller's running subtask is found by its own heartbeat."""
        entry = self._steps.get(subtask_id)
        if entry is None or entry.cancel_line is not None or self._tg is None:
            return False  # not running here (a subtask runs only while the engine's group does)
        entry.cancel_line = "cancelled by the operator"
        self._tg.create_task(self._interrupt(entry), name=f"cancel-{subtask_id}")
        return True

    async def _interrupt(self, entry: _Running) -> None:
        # the command is cancelled where it runs first (journalled there: no signal after it), then the
        # step stops waiting for it
        if self.canceller is not None:
            try:
                async with asyncio.timeout(CANCEL_BOUND):
                    entry.cancel_line = await self.canceller(entry.run)
            except Exception as exc:
                log.warning("cancelling subtask %s: %r", entry.run.subtask_id, exc)
                entry.cancel_line = f"cancelled by the operator (cancelling its command failed: {exc!r})"
        if entry.step is not None:
            entry.step.cancel()

    async def wait_task(self, task_id: int, timeout: float = 60.0) -> TaskStatus:
        """Until the task is no longer RUNNING (for tests and the demo: no polling sleeps)."""
        async with asyncio.timeout(timeout):
            while True:
                # taken before reading: a finish while we read sets this very event
                event = self._task_events.setdefault(task_id, asyncio.Event())
                status = await self.store.tasks.status(task_id)
                if status != TaskStatus.RUNNING:
                    return status
                await event.wait()

    async def run(self, stopping: asyncio.Event) -> None:
        """Run until `stopping` is set; then drain running subtasks (bounded) and cancel the rest."""
        writer_stopping = asyncio.Event()
        async with asyncio.TaskGroup() as tg:
            self._tg = tg
            tg.create_task(self.writer.run(writer_stopping), name="engine-writer")
            await self._reclaim(tg, ours=True)
            next_reclaim = time.monotonic() + self.reclaim_interval
            heartbeat = tg.create_task(self._heartbeat(), name="engine-heartbeat")
            self.started.set()
            while not stopping.is_set():
                if time.monotonic() >= next_reclaim:
                    next_reclaim = time.monotonic() + self.reclaim_interval
                    await self._reclaim(tg, ours=False)
                free = self.max_concurrency - len(self._running)
                claimed_now = (
                    await self.store.leases.claim_ready(self.owner, self.lease, free) if free > 0 else []
                )
                for claimed in claimed_now:
                    self._start(tg, claimed)
                # every slot taken (now, or already): READY subtasks may be left, so each subtask that
                # ends wakes this loop to claim more. (It was cleared when no slot was free, and a stage
                # wider than max_concurrency then waited for the poll interval between waves.)
                self._saturated = free <= 0 or len(claimed_now) == free
                if claimed_now and len(claimed_now) == free:
                    continue
                await self._sleep(stopping, max(0.0, next_reclaim - time.monotonic()))
            heartbeat.cancel()
            self._tg = None  # no new cancels: what is still running drains, or is resumed next time
            await self._drain()
            writer_stopping.set()  # after the drain: outcomes decided while draining are still written

    async def _reclaim(self, tg: asyncio.TaskGroup, ours: bool) -> None:
        """Take the subtasks whose controller's lease expired, and at start those we held before a restart
        (later, ours that we dropped come back once expired: a controller misconfigured with our id
        keeps its own)."""
        try:
            found = await self.store.leases.reclaim(self.owner, self.lease, list(self._running), ours=ours)
        except Exception as exc:  # the store is away: the next round tries again
            if not self.started.is_set():
                raise  # at start: the daemon says why it cannot run
            log.warning("could not reclaim expired leases: %r", exc)
            return
        for claimed in found:
            log.info(
                "resuming subtask %s (%s) of task %s: its lease was ours or expired",
                claimed.id,
                claimed.name,
                claimed.task_id,
            )
            self._start(tg, claimed)

    async def _sleep(self, stopping: asyncio.Event, at_most: float) -> None:
        waits = [asyncio.ensure_future(self._wake.wait()), asyncio.ensure_future(stopping.wait())]
        try:
            timeout = min(self.poll_interval, at_most)
            await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()
        self._wake.clear()

    async def _drain(self) -> None:
        if not self._running:
            return
        log.info("draining %d running subtask(s) for up to %.0fs", len(self._running), self.drain_timeout)
        _, pending = await asyncio.wait(list(self._running.values()), timeout=self.drain_timeout)
        for t in pending:
            t.cancel()  # stays RUNNING under our lease: resumed at the next start

    async def _heartbeat(self) -> None:
        renewed = time.monotonic()  # when the last renewal began: our leases hold at least lease s from it
        while True:
            await asyncio.sleep(self.lease / 3)
            began = time.monotonic()
            try:
                answer = await self.store.leases.renew(self.owner, list(self._running), self.lease)
            except Exception as exc:
                cause = store_cause(exc) if store_failure(exc) else repr(exc)
                log.warning("could not renew the leases of %d subtask(s): %s", len(self._running), cause)
                if time.monotonic() - renewed >= self.lease:  # another controller may hold them by now
                    for sid in list(self._steps):
                        self._lose(sid, "its lease could not be renewed for the lease time")
                continue
            renewed = began
            for sid in answer.lost:
                self._lose(sid, "another controller holds its lease now")
            for sid in answer.cancelling:
                self.cancel(sid)  # cancelled through another controller's API

    def _lose(self, subtask_id: int, why: str) -> None:
        """Stop acting on a subtask this engine no longer holds; whoever holds it resumes it (same command
        id: an agent answers a copy of it from its journal), or, when the store is back, we do."""
        entry = self._steps.get(subtask_id)
        if entry is None or entry.lost:
            return  # not running here, or it ended as the renewal ran
        entry.lost = True
        log.warning("subtask %s: %s; stopping work on it here", subtask_id, why)
        self.writer.log(subtask_id, f"{why}: controller {self.owner} stops working on it")
        if entry.step is not None:
            entry.step.cancel()

    def _start(self, tg: asyncio.TaskGroup, claimed: Claimed) -> None:
        self._running[claimed.id] = tg.create_task(self._execute(claimed), name=f"subtask-{claimed.id}")

    async def _task_of(self, task_id: int) -> _TaskFacts:
        if task_id not in self._tasks:
            cluster_id, context = await self.store.tasks.header(task_id)
            _, zones, servers = await self.store.clusters.get(cluster_id)
            self._tasks[task_id] = _TaskFacts(
                cluster_id,
                context,
                {
                    s.id: ServerFacts(s.id, s.zone, s.host, s.ip, s.sql_port, s.rpc_port, s.home_path)
                    for s in servers
                },
                {z.name: z.id for z in zones},
            )
        return self._tasks[task_id]

    async def _execute(self, claimed: Claimed) -> None:
        # each subtask runs in its own asyncio task: what it logs (dispatch too) names the task and subtask
        structlog.contextvars.bind_contextvars(taskId=claimed.task_id, subtaskId=claimed.id)
        began = time.monotonic()
        try:
            # remote calls give up a little before the engine's own timeout, to say why (agent offline...)
            margin = min(2.0, claimed.timeout * 0.1)
            deadline = time.monotonic() + claimed.timeout - margin
            facts = await self._task_of(claimed.task_id)
            run = StepRun(
                previous=claimed.result,
                subtask_id=claimed.id,
                task_id=claimed.task_id,
                node=claimed.node,
                step=claimed.step,
                run_time=claimed.run_time,
                operation=claimed.operation,
                context=claimed.context,
                cluster_id=facts.cluster_id,
                task_context=facts.context,
                deadline=deadline,
                command_prefix=f"obstop-{self.store.id}",
                command_secret=self.store.db.command_secret,
                servers=facts.servers,
                zones=facts.zones,
                sink=self.sink,
            )
            entry = self._steps[claimed.id] = _Running(run)
            ok, line = await self._outcome(claimed, run, entry)
            if entry.lost:
                return  # not ours to finish (a finish would be refused: compare-and-set on the owner)
            try:
                request = FinishRequest(
                    run.subtask_id,
                    self.owner,
                    ok,
                    line,
                    run.result,
                    tuple(run.moves) if ok else (),
                    run.command_result,
                    backward=claimed.operation in BACKWARD,
                )
                done = await asyncio.shield(self.writer.finish(request))
            except LeaseLost as exc:
                log.warning("%s", exc)
                return
            self.metrics.subtask_finished(claimed.name, ok, time.monotonic() - began)
            if done.task_status is not None and done.task_status != TaskStatus.RUNNING:
                self._task_ended(done.task_id, done.task_status, facts.cluster_id)
            if not ok:
                log.warning(
                    "subtask %s (%s) of task %s failed: %s", claimed.id, claimed.name, claimed.task_id, line
                )
        finally:
            self._running.pop(claimed.id, None)
            self._steps.pop(claimed.id, None)
            if self._saturated:
                self.wake()  # a slot is free: READY subtasks beyond max_concurrency may be waiting for it

    def _task_ended(self, task_id: int, status: TaskStatus, cluster_id: int) -> None:
        log.info("task %s %s", task_id, status)
        self._tasks.pop(task_id, None)  # read again if it is retried
        self.sink.forget(task_id)
        if self.on_task_end is not None:
            self.on_task_end(cluster_id)
        if event := self._task_events.pop(task_id, None):
            event.set()  # every waiter holds this event; the next wait makes a new one

    def _claim_request(self) -> ClaimRequest | None:
        free = self.max_concurrency - len(self._running)
        return ClaimRequest(self.owner, self.lease, free) if self._tg is not None and free > 0 else None

    def _on_handoff(self, handoff: Handoff | None, promoted: bool) -> None:
        """The writer committed finishes; what their transaction claimed runs now (the Wait nodes it
        finished there are counted). Anything promoted and left unclaimed wakes the claim loop."""
        if handoff is not None:
            self._saturated = handoff.saturated
            for claimed in handoff.claimed:
                if self._tg is None:  # shutting down: it stays RUNNING under our lease, resumed next start
                    break
                self._start(self._tg, claimed)
            for claimed, done in handoff.waited:
                self.metrics.subtask_finished(claimed.name, True, 0.0)
                facts = self._tasks.get(done.task_id)
                if done.task_status not in (None, TaskStatus.RUNNING) and facts is not None:
                    self._task_ended(done.task_id, TaskStatus(done.task_status), facts.cluster_id)
        if promoted and (handoff is None or handoff.saturated):
            self.wake()

    async def _outcome(self, claimed: Claimed, run: StepRun, entry: _Running) -> tuple[bool, str]:
        """Run the step (or not: a skip, a cancel found on resume); (ok, the line that closes its log)."""
        if claimed.operation in SKIPPED:
            what = "its rollback" if claimed.operation == Operation.ROLLBACK_SKIP else "it"
            return True, f"skipped by the operator: {what} was not run"
        if claimed.status == SubtaskStatus.CANCELING:  # cancelled while no controller ran it
            entry.cancel_line = "cancelled by the operator"
            await self._interrupt(entry)
            return False, entry.cancel_line
        entry.step = asyncio.ensure_future(self.runner(run))
        try:
            async with asyncio.timeout(claimed.timeout):
                return True, await entry.step
        except StepFailed as exc:
            return False, exc.message
        except TimeoutError:
            return False, f"timed out after {claimed.timeout}s"
        except asyncio.CancelledError:
            if asyncio.current_task().cancelling():  # type: ignore[union-attr]
                raise  # a shutdown: it stays RUNNING under our lease, resumed at the next start
            if entry.lost:
                return False, "lease lost"
            if entry.cancel_line is None:
                raise
            return False, entry.cancel_line
        except Exception as exc:
            if not store_failure(exc):
                log.exception("subtask %s (%s) crashed", claimed.id, claimed.name)
                return False, f"internal error: {exc!r}"
            cause = store_cause(exc)
            log.warning("subtask %s (%s): the store did not answer: %s", claimed.id, claimed.name, cause)
            return False, f"the store did not answer: {cause}"
