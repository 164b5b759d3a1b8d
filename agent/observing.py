"""One observer's state for a watch (the agent's, or the controller's own for agentless hosts): the same
probe a stop starts with, bounded in time; it never signals anything."""

from __future__ import annotations

import asyncio

from obstop.agent import procedure
from obstop.agent.errors import ExecutorError
from obstop.agent.executors.host import Host
from obstop.agent.protocol import ObserverState, ObserverStatus, ObserverTarget


async def observe(host: Host | None, target: ObserverTarget, timeout: float) -> ObserverStatus:
    """One observer's state, by the same probe a stop starts with; an unreachable host says why."""
    if host is None:
        return ObserverStatus(
            host=target.host,
            home_path=target.home_path,
            state=ObserverState.REFUSED,
            reason=f"this agent does not serve host {target.host}",
        )
    try:
        async with asyncio.timeout(timeout):
            report = await procedure.probe(host, target)
    except (ExecutorError, TimeoutError) as exc:
        reason = str(exc) or f"no answer from {target.host} within {timeout:g}s"
        return ObserverStatus(
            host=target.host, home_path=target.home_path, state=ObserverState.REFUSED, reason=reason
        )
    return ObserverStatus(
        host=target.host,
        home_path=target.home_path,
        state=report.state,
        pid=report.pid,
        listening=set(target.ports) <= set(report.ports_held),
        reason=report.reason,
    )
