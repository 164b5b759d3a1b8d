"""The agent's watch of its observers: what the controller reconciles statuses from.

The controller sends a `watch_observers` command when the agent comes online (and again when it wants
fresh news); the watcher probes those observers every probe interval, and publishes their state when
one changed and, in full, every report interval and at once after each new watch. Probing reads /proc
and the socket table (or runs one shell round trip over SSH): it never signals anything.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Awaitable, Callable, Mapping

from obstop.agent.executors.host import Host
from obstop.agent.observing import observe
from obstop.agent.protocol import ObserverStateEvent, ObserverStatus, WatchArgs

log = logging.getLogger("obstop.agent.watch")

Publish = Callable[[ObserverStateEvent], Awaitable[None]]
CHUNK = 256  # observers per event (the protocol's cap)


class Watcher:
    def __init__(self, agent_id: str, hosts: Mapping[str, Host], publish: Publish) -> None:
        self.agent_id = agent_id
        self.hosts = hosts
        self.publish = publish
        self._args = WatchArgs(targets=[])
        self._watch_id: str | None = None
        self._replaced: collections.deque[str] = collections.deque(maxlen=64)
        self._renewed = asyncio.Event()

    def watch(self, command_id: str, args: WatchArgs) -> None:
        """Replace what is watched; a full report follows at once. A copy of a watch replaced since (a
        QoS 1 redelivery, a re-send: watches are not journalled) is ignored, never put back."""
        if command_id in self._replaced:
            log.info("watch %s ignored: a later watch replaced it", command_id)
            return
        if self._watch_id is not None and self._watch_id != command_id:
            self._replaced.append(self._watch_id)
        self._watch_id, self._args = command_id, args
        self._renewed.set()
        log.info("watching %d observer(s) (watch %s)", len(args.targets), command_id)

    async def run(self) -> None:
        last: dict[tuple[str, str], ObserverStatus] = {}
        next_full = 0.0
        while True:
            if not self._args.targets:
                await self._renewed.wait()
            renewed = self._renewed.is_set()
            self._renewed.clear()
            args, watch_id = self._args, self._watch_id
            timeout = max(1.0, args.probe_interval * 4)
            try:
                found = await asyncio.gather(
                    *(observe(self.hosts.get(t.host), t, timeout) for t in args.targets)
                )
                now = time.monotonic()
                current = {(s.host, s.home_path): s for s in found}
                full = renewed or now >= next_full
                changed = [s for key, s in current.items() if last.get(key) != s]
                if full:
                    next_full = now + args.report_interval
                if full or changed:
                    await self._send(watch_id, list(current.values()) if full else changed, full)
                last = current
            except Exception:  # the watch is news, never a reason for the agent to end
                log.exception("watching observers failed; trying again at the next probe")
            try:
                async with asyncio.timeout(args.probe_interval):
                    await self._renewed.wait()
            except TimeoutError:
                pass

    async def _send(self, watch_id: str | None, statuses: list[ObserverStatus], full: bool) -> None:
        for i in range(0, max(len(statuses), 1), CHUNK):
            await self.publish(
                ObserverStateEvent(
                    agent_id=self.agent_id,
                    command_id=watch_id,
                    observers=statuses[i : i + CHUNK],
                    full=full,
                )
            )
