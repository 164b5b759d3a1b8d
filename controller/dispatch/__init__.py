"""Where a server's commands go: to the agent serving its host (MQTT), or run by the controller itself
(agentless: this machine, or over SSH like OBD). Both answer with the protocol's reports.

Idempotency is by command id: the steps record an id before sending it, and a recorded result is
answered without running the command again. A cancel is journalled where the command runs before it is
acted on. Dispatchers also watch the observers they serve and hand their state to `on_observed` (the
controller reconciles statuses from it). Dispatchers are given their collaborators (config, keys, a
journal); they import neither the store nor the engine. Used by controller/steps and wired by the daemon.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Protocol

from obstop.agent.protocol import (
    CancelReport,
    ObserverStatus,
    ObserverTarget,
    ProbeReport,
    StartOptions,
    StartReport,
    StopOptions,
    StopReport,
)
from obstop.controller.errors import StepFailed

Log = Callable[[str], Awaitable[None]]
OnObserved = Callable[[Sequence[ObserverStatus]], None]


@dataclass(frozen=True)
class WatchPlan:
    """What a dispatcher watches, how often it probes, and how often it reports in full."""

    targets: Sequence[ObserverTarget]
    on_observed: OnObserved
    probe_interval: float = 5.0
    report_interval: float = 30.0


class Dispatcher(Protocol):
    def serves(self, host: str) -> bool: ...

    async def run(self, stopping: asyncio.Event) -> None:
        """The dispatcher's background work (connections, listeners, the watch) until stopping is set."""
        ...

    async def probe(self, command_id: str, target: ObserverTarget, log: Log, deadline: float) -> ProbeReport:
        """deadline: time.monotonic() by which to answer, or raise StepFailed saying why not."""
        ...

    async def stop(
        self, command_id: str, target: ObserverTarget, options: StopOptions, log: Log, deadline: float
    ) -> StopReport: ...

    async def start(
        self, command_id: str, target: ObserverTarget, options: StartOptions, log: Log, deadline: float
    ) -> StartReport: ...

    async def cancel(
        self, command_id: str, target: ObserverTarget, log: Log, deadline: float
    ) -> CancelReport:
        """Cancel a stop or start: journalled where it runs before it is acted on; no signal after it."""
        ...

    def watch(self, plan: WatchPlan) -> None:
        """Watch these observers (set before run())."""
        ...

    def refresh(self, hosts: Collection[str]) -> None:
        """Probe these hosts' observers now; report nothing older than this call for them."""
        ...

    async def close(self) -> None: ...


class Router:
    """Picks the dispatcher for a host: agentless when listed there, else the agents over MQTT."""

    def __init__(self, *dispatchers: Dispatcher) -> None:
        self.dispatchers = dispatchers

    def for_host(self, host: str) -> Dispatcher:
        for d in self.dispatchers:
            if d.serves(host):
                return d
        raise StepFailed(
            f"no route to host {host}: not listed under [agentless], and no agent serves it over MQTT"
        )

    def watch(self, plan: WatchPlan) -> None:
        """Each dispatcher watches the observers of the hosts it serves."""
        mine: dict[int, list[ObserverTarget]] = {}
        for t in plan.targets:
            for i, d in enumerate(self.dispatchers):
                if d.serves(t.host):
                    mine.setdefault(i, []).append(t)
                    break
        for i, d in enumerate(self.dispatchers):
            d.watch(WatchPlan(mine.get(i, []), plan.on_observed, plan.probe_interval, plan.report_interval))

    def refresh(self, hosts: Collection[str]) -> None:
        for d in self.dispatchers:
            d.refresh([h for h in hosts if d.serves(h)])

    async def close(self) -> None:
        for d in self.dispatchers:
            await d.close()
