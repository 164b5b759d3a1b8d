"""Where a server's commands go: to the agent serving its host (MQTT), or run by the controller itself
(agentless: this machine, or over SSH like OBD). Both answer with the protocol's reports.

Idempotency is by command id: the id is recorded before the command is sent, and a recorded result is
answered without running the command again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Protocol

from obstop.agent import procedure
from obstop.agent.executors.host import Host
from obstop.agent.executors.local import LocalHost
from obstop.agent.protocol import ObserverTarget, ProbeReport, StopOptions, StopReport
from obstop.controller.config import AgentlessConfig
from obstop.controller.errors import StepFailed
from obstop.controller.store.core import Store

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


class _StoreJournal:
    def __init__(self, store: Store, command_id: str) -> None:
        self._store = store
        self._command_id = command_id

    async def record(self, mark: str) -> bool:
        return await self._store.mark(self._command_id, mark)


class AgentlessDispatcher:
    """Runs the agent's procedure in the controller process, on hosts listed in [agentless]."""

    def __init__(self, config: AgentlessConfig, store: Store | None = None) -> None:
        self._store = store
        self._hosts: dict[str, Host] = {name: LocalHost(name) for name in config.local_hosts}
        handshakes = asyncio.Semaphore(8)  # fewer than sshd's MaxStartups (10) at once
        for h in config.ssh:
            self._hosts[h.host] = h.open(handshakes)

    def serves(self, host: str) -> bool:
        return host in self._hosts

    async def run(self, stopping: asyncio.Event) -> None:
        return None  # connections are opened on demand and kept until close()

    async def probe(self, command_id: str, target: ObserverTarget, log: Log, deadline: float) -> ProbeReport:
        return await procedure.probe(self._hosts[target.host], target)

    async def stop(
        self, command_id: str, target: ObserverTarget, options: StopOptions, log: Log, deadline: float
    ) -> StopReport:
        journal = _StoreJournal(self._store, command_id) if self._store else None
        return await procedure.stop(self._hosts[target.host], target, options, progress=log, journal=journal)

    async def close(self) -> None:
        for h in self._hosts.values():
            await h.close()


class Router:
    """Picks the dispatcher for a host: agentless when listed there, else the agents over MQTT."""

    def __init__(self, *dispatchers: Dispatcher) -> None:
        self._dispatchers = dispatchers

    def for_host(self, host: str) -> Dispatcher:
        for d in self._dispatchers:
            if d.serves(host):
                return d
        raise StepFailed(
            f"no route to host {host}: not listed under [agentless], and no agent serves it over MQTT"
        )

    async def close(self) -> None:
        for d in self._dispatchers:
            await d.close()
