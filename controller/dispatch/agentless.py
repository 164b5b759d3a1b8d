"""The agent's own procedure run in the controller process, on hosts listed in [agentless]: this machine,
or hosts reached over SSH (like OBD)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from obstop.agent import procedure
from obstop.agent.executors.host import Host
from obstop.agent.executors.local import LocalHost
from obstop.agent.protocol import ObserverTarget, ProbeReport, StopOptions, StopReport
from obstop.controller.config import AgentlessConfig
from obstop.controller.dispatch import Log

Journal = Callable[[str], procedure.SignalJournal]  # command id -> where its signals are marked


class AgentlessDispatcher:
    def __init__(self, config: AgentlessConfig, journal: Journal | None = None) -> None:
        self._journal = journal
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
        journal = self._journal(command_id) if self._journal else None
        return await procedure.stop(self._hosts[target.host], target, options, progress=log, journal=journal)

    async def close(self) -> None:
        for h in self._hosts.values():
            await h.close()
