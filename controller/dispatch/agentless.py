"""The agent's own procedures run in the controller process, on hosts listed in [agentless]: this machine,
or hosts reached over SSH (like OBD). The controller also watches these observers itself."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Collection, Iterator
from typing import Protocol

from obstop.agent import procedure, starting
from obstop.agent.cancel import CANCEL_MARK, CancelToken
from obstop.agent.executors.host import Host, SignalTrip
from obstop.agent.executors.local import LocalHost
from obstop.agent.observing import observe
from obstop.agent.protocol import (
    CancelReport,
    ObserverState,
    ObserverStatus,
    ObserverTarget,
    ProbeReport,
    StartOptions,
    StartReport,
    StopOptions,
    StopReport,
)
from obstop.controller.config import AgentlessConfig
from obstop.controller.dispatch import Log, WatchPlan

logger = logging.getLogger("obstop.agentless")

CommandJournal = procedure.CommandJournal
# how long a probe's proof serves the stop after it (its stage's freeze wait may be long); the stop's one
# round trip checks on the host, with the signal, that the process is still the one proved
PROOF_MAX_AGE = 900.0


class Journal(Protocol):
    def __call__(self, command_id: str) -> CommandJournal: ...


class AgentlessDispatcher:
    def __init__(self, config: AgentlessConfig, journal: Journal | None = None) -> None:
        self._journal = journal
        self._hosts: dict[str, Host] = {name: LocalHost(name) for name in config.local_hosts}
        # fewer than sshd's MaxStartups (10) at once, per sshd (an address and port): every host's sshd
        # takes its own, so 30 hosts connect together, not in waves of 8
        handshakes: dict[tuple[str, int], asyncio.Semaphore] = {}
        for h in config.ssh:
            self._hosts[h.host] = h.open(handshakes.setdefault((h.address, h.port), asyncio.Semaphore(8)))
        self._tokens: dict[str, CancelToken] = {}
        self._busy: dict[ObserverTarget, int] = {}  # commands running on each observer now
        self._done: dict[ObserverTarget, float] = {}  # when the last command on each observer ended
        # the last probe of each observer that found it RUNNING: the stop after it proves nothing again
        self._proofs: dict[ObserverTarget, tuple[float, procedure.Examined]] = {}
        self._plan: WatchPlan | None = None
        self._generation = 0  # a refresh makes reports of probes begun before it stale
        self._refreshed = asyncio.Event()

    def serves(self, host: str) -> bool:
        return host in self._hosts

    async def run(self, stopping: asyncio.Event) -> None:
        """Watch the observers this controller serves itself (connections open on demand until close())."""
        plan = self._plan
        if plan is None or not plan.targets:
            return
        last: dict[tuple[str, str], ObserverStatus] = {}
        next_full = 0.0
        while not stopping.is_set():
            generation, full = self._generation, self._refreshed.is_set()
            self._refreshed.clear()
            timeout = max(1.0, plan.probe_interval * 4)
            try:
                since = time.monotonic() - plan.probe_interval
                found = await asyncio.gather(
                    *(self._look(t, last, timeout, None if full else since) for t in plan.targets)
                )
            except Exception:  # the watch is news, never a reason for the controller to end
                logger.exception("watching the agentless observers failed; trying again at the next probe")
                found, generation = [], -1
                self._refreshed.clear()
            if generation == self._generation:
                now = time.monotonic()
                full = full or now >= next_full
                next_full = now + plan.report_interval if full else next_full
                changed = [s for s in found if last.get((s.host, s.home_path)) != s]
                if full or changed:
                    plan.on_observed(found if full else changed)
                last = {(s.host, s.home_path): s for s in found}
            elif generation >= 0:
                self._refreshed.set()  # probed before a refresh: again, at once
            waits = [asyncio.ensure_future(self._refreshed.wait()), asyncio.ensure_future(stopping.wait())]
            await asyncio.wait(waits, timeout=plan.probe_interval, return_when=asyncio.FIRST_COMPLETED)
            for w in waits:
                w.cancel()

    async def _look(
        self,
        t: ObserverTarget,
        last: dict[tuple[str, str], ObserverStatus],
        timeout: float,
        since: float | None,
    ) -> ObserverStatus:
        """A watch's probe of one observer; while a command is at it, or when one ended after `since`
        (None: a refresh, every observer afresh), what it was: a task's commands say what its observers
        do (a task's statuses come from them, and its end refreshes), so its hosts are not probed twice."""
        known = last.get((t.host, t.home_path))
        recent = since is not None and self._done.get(t, 0.0) > since
        if known is not None and (self._busy.get(t) or recent):
            return known
        return await observe(self._hosts.get(t.host), t, timeout)

    def watch(self, plan: WatchPlan) -> None:
        self._plan = plan

    def refresh(self, hosts: Collection[str]) -> None:
        if hosts:
            self._generation += 1
            self._refreshed.set()

    @contextlib.contextmanager
    def _at(self, target: ObserverTarget) -> Iterator[None]:
        self._busy[target] = self._busy.get(target, 0) + 1
        try:
            yield
        finally:
            self._busy[target] -= 1
            if not self._busy[target]:
                del self._busy[target]
            self._done[target] = time.monotonic()

    async def probe(self, command_id: str, target: ObserverTarget, log: Log, deadline: float) -> ProbeReport:
        with self._at(target):
            return await self._probe(target)

    async def _probe(self, target: ObserverTarget) -> ProbeReport:
        host = self._hosts[target.host]
        if not isinstance(host, SignalTrip):
            return await procedure.probe(host, target)
        found = await procedure.examine(host, target)
        if found.report.state is ObserverState.RUNNING:
            self._proofs[target] = (time.monotonic(), found)
        else:
            self._proofs.pop(target, None)
        return found.report

    async def stop(
        self, command_id: str, target: ObserverTarget, options: StopOptions, log: Log, deadline: float
    ) -> StopReport:
        journal = self._journal(command_id) if self._journal else None
        proof = self._proofs.pop(target, None)
        proven = proof[1] if proof is not None and time.monotonic() - proof[0] < PROOF_MAX_AGE else None
        with self._at(target):
            return await self._stop(command_id, target, options, log, journal, proven)

    async def _stop(
        self,
        command_id: str,
        target: ObserverTarget,
        options: StopOptions,
        log: Log,
        journal: CommandJournal | None,
        proven: procedure.Examined | None,
    ) -> StopReport:
        async with self._token(command_id, journal) as token:
            return await procedure.stop(
                self._hosts[target.host],
                target,
                options,
                progress=log,
                journal=journal,
                cancel=token,
                proven=proven,
            )

    async def start(
        self, command_id: str, target: ObserverTarget, options: StartOptions, log: Log, deadline: float
    ) -> StartReport:
        journal = self._journal(command_id) if self._journal else None
        with self._at(target):
            async with self._token(command_id, journal) as token:
                return await starting.start(
                    self._hosts[target.host], target, options, progress=log, journal=journal, cancel=token
                )

    @contextlib.asynccontextmanager
    async def _token(self, command_id: str, journal: CommandJournal | None) -> AsyncIterator[CancelToken]:
        marks = await journal.marks() if journal is not None else []
        token = CancelToken(cancelled=CANCEL_MARK in marks)
        self._tokens[command_id] = token
        try:
            yield token
        finally:
            self._tokens.pop(command_id, None)

    async def cancel(
        self, command_id: str, target: ObserverTarget, log: Log, deadline: float
    ) -> CancelReport:
        journal = self._journal(command_id) if self._journal else None

        async def record() -> None:
            if journal is not None:
                await journal.record(CANCEL_MARK)

        token = self._tokens.get(command_id)
        if token is not None:
            await token.cancel(record)  # waits for a signal in progress; none after this
        else:
            await record()
        marks = await journal.marks() if journal is not None else []
        signals = [m.split(":", 1)[0] for m in marks if m.startswith("SIG")]
        detail = (
            f"cancelled after {' then '.join(signals)}; no signal after the cancel"
            if signals
            else "cancelled before any signal"
        )
        return CancelReport(command_id=command_id, found=token is not None, signals=signals, detail=detail)

    async def close(self) -> None:
        for h in self._hosts.values():
            await h.close()
