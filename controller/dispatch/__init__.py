"""Where a server's commands go: to the agent serving its host (MQTT), or run by the controller itself
(agentless: this machine, or over SSH like OBD). Both answer with the protocol's reports.

Idempotency is by command id: the steps record an id before sending it, and a recorded result is
answered without running the command again. Dispatchers are given their collaborators (config, keys, a
journal); they import neither the store nor the engine. Used by controller/steps and wired by the daemon.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Protocol

from obstop.agent.protocol import ObserverTarget, ProbeReport, StopOptions, StopReport
from obstop.controller.errors import StepFailed

Log = Callable[[str], Awaitable[None]]


class Dispatcher(Protocol):
    def serves(self, host: str) -> bool: ...

    async def run(self, stopping: asyncio.Event) -> None:
        """The dispatcher's background work (connections, listeners) until stopping is set."""
        ...

    async def probe(self, command_id: str, target: ObserverTarget, log: Log, deadline: float) -> ProbeReport:
        """deadline: time.monotonic() by which to answer, or raise StepFailed saying why not."""
        ...

    async def stop(
        self, command_id: str, target: ObserverTarget, options: StopOptions, log: Log, deadline: float
    ) -> StopReport: ...

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

    async def close(self) -> None:
        for d in self.dispatchers:
            await d.close()
