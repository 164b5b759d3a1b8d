"""What each agent watches between tasks: the observers of the watch plan grouped by the agent that serves
them, one signed watch command per agent (sent when it comes online, or when its news must be fresh), and
which of its reports count (only those of its latest watch, only for observers it was told to watch)."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable, Collection

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from obstop.agent.protocol import CommandKind, ObserverStateEvent, ObserverTarget, WatchArgs, new_command
from obstop.agent.signing import sign
from obstop.controller.dispatch import WatchPlan

logger = logging.getLogger("obstop.mqtt")

MAX_TARGETS = 256  # observers in one agent's watch (one host serves a handful)

Send = Callable[[str, str], Awaitable[bool]]  # (agent id, payload) -> whether the broker took it


class Watches:
    def __init__(
        self, agent_for: Callable[[str], str], key: Ed25519PrivateKey, ttl: float, send: Send
    ) -> None:
        self._agent_for, self._key, self._ttl, self._send = agent_for, key, ttl, send
        self._plan: WatchPlan | None = None
        self._watched: dict[str, list[ObserverTarget]] = {}  # agent id -> the observers it watches
        self._ids: dict[str, str] = {}  # agent id -> its latest watch command
        self._due: asyncio.Queue[str] = asyncio.Queue()

    def plan(self, plan: WatchPlan) -> None:
        self._plan = plan
        self._watched = {}
        for t in plan.targets:
            self._watched.setdefault(self._agent_for(t.host), []).append(t)

    def knows(self, agent_id: str) -> bool:
        """An agent of the inventory (topics can name any id)."""
        return agent_id in self._watched

    def online(self, agent_id: str) -> None:
        if agent_id in self._watched:
            self._due.put_nowait(agent_id)

    def refresh(self, hosts: Collection[str]) -> None:
        for agent_id in {self._agent_for(h) for h in hosts}:
            if agent_id in self._watched:
                self._ids.pop(agent_id, None)  # reports of the old watch are stale from now on
                self._due.put_nowait(agent_id)

    def current(self, event: ObserverStateEvent, agent_id: str) -> bool:
        """The report answers the agent's latest watch (checked before any signature work)."""
        return event.command_id is not None and event.command_id == self._ids.get(agent_id)

    def observed(self, agent_id: str, event: ObserverStateEvent) -> None:
        """A verified report of the agent's latest watch."""
        plan = self._plan
        if plan is None:
            return
        mine = {(t.host, t.home_path) for t in self._watched.get(agent_id, [])}
        # an agent reports only the observers it was told to watch
        observed = [o for o in event.observers if (o.host, o.home_path) in mine]
        if observed:
            plan.on_observed(observed)

    async def run(self, stopping: asyncio.Event) -> None:
        """Tell each agent that comes online (or whose news must be fresh) what to watch."""
        while not stopping.is_set():
            got, stop = asyncio.ensure_future(self._due.get()), asyncio.ensure_future(stopping.wait())
            done, _ = await asyncio.wait([got, stop], return_when=asyncio.FIRST_COMPLETED)
            got.cancel()
            stop.cancel()
            if got not in done or got.cancelled():
                continue
            agent_id = got.result()
            try:
                await self._send_watch(agent_id)
            except Exception:  # the watch is news, never a reason for the controller to end
                logger.exception("could not send agent %s its watch", agent_id)

    async def _send_watch(self, agent_id: str) -> None:
        plan = self._plan
        if plan is None or agent_id not in self._watched:
            return
        args = WatchArgs(
            targets=self._watched[agent_id][:MAX_TARGETS],
            probe_interval=plan.probe_interval,
            report_interval=plan.report_interval,
        )
        command_id = f"watch-{agent_id}-{uuid.uuid4().hex[:12]}"[:128]
        command = new_command(
            agent_id, CommandKind.WATCH_OBSERVERS, args, command_id=command_id, ttl=self._ttl
        )
        self._ids[agent_id] = command_id
        if not await self._send(agent_id, sign(command, self._key).model_dump_json()):
            logger.info("could not send the watch to agent %s now; it is sent when it comes online", agent_id)
