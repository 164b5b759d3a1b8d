"""Commands to agents over MQTT: signed, QoS 1, re-sent with the same id until a result comes back.

A QoS 1 acknowledgement only means the broker took the message: the answer is the agent's result event,
matched by command id. Agents' presence (retained, with a last will) tells an operator why a command
had no answer ("agent h3 offline since 12:03:04"). An agent that comes online is told which observers
to watch; their state comes back as events, only from the agent that serves them and only for the
latest watch (an older one may predate a refresh).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime

from obstop.agent.mqtt_session import Broker, Session
from obstop.agent.protocol import (
    TOPIC_PREFIX,
    AcceptedEvent,
    AnyArgs,
    AnyEvent,
    CancelArgs,
    CancelReport,
    CommandKind,
    EventEnvelope,
    ObserverStateEvent,
    ObserverTarget,
    Presence,
    ProbeArgs,
    ProbeReport,
    ProgressEvent,
    RejectedEvent,
    ResultEvent,
    StartArgs,
    StartOptions,
    StartReport,
    StopArgs,
    StopOptions,
    StopReport,
    WatchArgs,
    commands_topic,
    new_command,
)
from obstop.agent.signing import load_private, sign
from obstop.controller.config import ControllerConfig
from obstop.controller.dispatch import Log, WatchPlan
from obstop.controller.errors import ConfigError, StepFailed

logger = logging.getLogger("obstop.mqtt")


@dataclass
class _Seen:
    state: Presence
    since: datetime


@dataclass
class _Waiter:
    events: asyncio.Queue[AnyEvent] = field(default_factory=asyncio.Queue)


class MqttDispatcher:
    def __init__(self, config: ControllerConfig) -> None:
        if config.signing.private_key is None:
            raise ConfigError(
                "[mqtt] is set but [signing] private_key is not: agents accept only signed commands"
            )
        self.config = config
        self.key = load_private(config.signing.private_key)
        self.routes = dict(config.agents.via)
        cfg = config.mqtt
        assert cfg.url is not None
        self.session = Session(
            Broker(cfg.url, cfg.username, cfg.password_file, cfg.ca_file),
            client_id=cfg.client_id or f"obstop-controller-{config.engine.controller_id}",
            subscriptions=[f"{TOPIC_PREFIX}/+/events", f"{TOPIC_PREFIX}/+/presence"],
            on_message=self._on_message,
        )
        self._waiters: dict[str, _Waiter] = {}
        self._presence: dict[str, _Seen] = {}
        self._plan: WatchPlan | None = None
        self._watched: dict[str, list[ObserverTarget]] = {}  # agent id -> the observers it watches
        self._watch_ids: dict[str, str] = {}  # agent id -> its latest watch command
        self._to_watch: asyncio.Queue[str] = asyncio.Queue()

    def serves(self, host: str) -> bool:
        return True  # any host not agentless is served by the agent named after it (or routed in [agents])

    def agent_for(self, host: str) -> str:
        return self.routes.get(host, host)

    # --- connection ------------------------------------------------------------------------------

    async def run(self, stopping: asyncio.Event) -> None:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self.session.run(stopping), name="mqtt-session")
            tg.create_task(self._send_watches(stopping), name="mqtt-watches")

    # --- the watch of observers ------------------------------------------------------------------

    def watch(self, plan: WatchPlan) -> None:
        self._plan = plan
        self._watched = {}
        for t in plan.targets:
            self._watched.setdefault(self.agent_for(t.host), []).append(t)

    def refresh(self, hosts: Collection[str]) -> None:
        for agent_id in {self.agent_for(h) for h in hosts}:
            if agent_id in self._watched:
                self._watch_ids.pop(agent_id, None)  # reports of the old watch are stale from now on
                self._to_watch.put_nowait(agent_id)

    async def _send_watches(self, stopping: asyncio.Event) -> None:
        """Tell each agent that comes online (or whose news must be fresh) what to watch."""
        while not stopping.is_set():
            got, stop = asyncio.ensure_future(self._to_watch.get()), asyncio.ensure_future(stopping.wait())
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
            targets=self._watched[agent_id][:256],
            probe_interval=plan.probe_interval,
            report_interval=plan.report_interval,
        )
        command_id = f"watch-{agent_id}-{uuid.uuid4().hex[:12]}"[:128]
        command = sign(
            new_command(
                agent_id,
                CommandKind.WATCH_OBSERVERS,
                args,
                command_id=command_id,
                ttl=self.config.signing.command_ttl_seconds,
            ),
            self.key,
        )
        self._watch_ids[agent_id] = command_id
        if not await self._send(agent_id, command.model_dump_json()):
            logger.info("could not send the watch to agent %s now; it is sent when it comes online", agent_id)

    def _on_observed(self, agent_id: str, event: ObserverStateEvent) -> None:
        plan = self._plan
        if plan is None or event.command_id is None or event.command_id != self._watch_ids.get(agent_id):
            return  # an older watch's report, maybe probed before a refresh
        mine = {(t.host, t.home_path) for t in self._watched.get(agent_id, [])}
        # an agent reports only the observers it was told to watch
        observed = [o for o in event.observers if (o.host, o.home_path) in mine]
        if observed:
            plan.on_observed(observed)

    def _on_message(self, topic: str, payload: bytes) -> None:
        parts = topic.split("/")
        if len(parts) != 5:
            return
        agent_id, kind = parts[3], parts[4]
        if kind == "presence":
            self._on_presence(agent_id, payload)
        elif kind == "events":
            self._on_event(agent_id, payload)

    def _on_presence(self, agent_id: str, payload: bytes) -> None:
        try:
            state = Presence(payload.decode().strip())
        except ValueError:
            return
        prev = self._presence.get(agent_id)
        if prev is None or prev.state != state:
            self._presence[agent_id] = _Seen(state, datetime.now(UTC))
            logger.info("agent %s is %s", agent_id, state)
            if state is Presence.ONLINE and agent_id in self._watched:
                self._to_watch.put_nowait(agent_id)

    def _on_event(self, agent_id: str, payload: bytes) -> None:
        try:
            event = EventEnvelope.parse(payload)
        except ValueError:
            logger.warning("unreadable event from agent %s", agent_id)
            return
        if event.agent_id != agent_id:
            logger.warning("event on agent %s's topic claims agent %s; ignored", agent_id, event.agent_id)
            return
        if isinstance(event, ObserverStateEvent):
            self._on_observed(agent_id, event)
            return
        if isinstance(event, RejectedEvent):
            logger.warning("agent %s rejected command %s: %s", agent_id, event.command_id, event.reason)
        waiter = self._waiters.get(event.command_id or "")
        if waiter is not None:
            waiter.events.put_nowait(event)

    def presence(self, agent_id: str) -> str:
        seen = self._presence.get(agent_id)
        if seen is None:
            return f"agent {agent_id} has not been seen since the controller started"
        stamp = seen.since.astimezone().strftime("%Y-%m-%d %H:%M:%S")
        if seen.state is Presence.OFFLINE:
            return f"agent {agent_id} offline since {stamp}"
        return f"agent {agent_id} online since {stamp} but gave no answer"

    # --- commands --------------------------------------------------------------------------------

    async def probe(self, command_id: str, target: ObserverTarget, log: Log, deadline: float) -> ProbeReport:
        result = await self._call(
            command_id, target.host, CommandKind.PROBE_OBSERVER, ProbeArgs(target=target), log, deadline
        )
        if result.probe is None:
            raise StepFailed(f"agent answered command {command_id} without a probe report")
        return result.probe

    async def stop(
        self, command_id: str, target: ObserverTarget, options: StopOptions, log: Log, deadline: float
    ) -> StopReport:
        result = await self._call(
            command_id,
            target.host,
            CommandKind.STOP_OBSERVER,
            StopArgs(target=target, options=options),
            log,
            deadline,
        )
        if result.stop is None:
            raise StepFailed(f"agent answered command {command_id} without a stop report")
        return result.stop

    async def start(
        self, command_id: str, target: ObserverTarget, options: StartOptions, log: Log, deadline: float
    ) -> StartReport:
        result = await self._call(
            command_id,
            target.host,
            CommandKind.START_OBSERVER,
            StartArgs(target=target, options=options),
            log,
            deadline,
        )
        if result.start is None:
            raise StepFailed(f"agent answered command {command_id} without a start report")
        return result.start

    async def cancel(
        self, command_id: str, target: ObserverTarget, log: Log, deadline: float
    ) -> CancelReport:
        result = await self._call(
            f"{command_id}.cancel"[:128],
            target.host,
            CommandKind.CANCEL_COMMAND,
            CancelArgs(command_id=command_id),
            log,
            deadline,
        )
        if result.cancel is None:
            raise StepFailed(f"agent answered the cancel of {command_id} without a cancel report")
        return result.cancel

    async def _call(
        self,
        command_id: str,
        host: str,
        kind: CommandKind,
        args: AnyArgs,
        log: Log,
        deadline: float,
    ) -> ResultEvent:
        agent_id = self.agent_for(host)
        ttl = max(self.config.signing.command_ttl_seconds, deadline - time.monotonic())
        command = sign(new_command(agent_id, kind, args, command_id=command_id, ttl=ttl), self.key)
        payload = command.model_dump_json()
        waiter = self._waiters.setdefault(command_id, _Waiter())
        resend = self.config.stop.resend_interval
        sends = 0
        try:
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise StepFailed(
                        f"no result for command {command_id} from agent {agent_id}: {self.presence(agent_id)}"
                    )
                if await self._send(agent_id, payload):
                    sends += 1
                    if sends > 1:
                        await log(
                            f"re-sent command {command_id} to agent {agent_id} (send {sends}); "
                            f"{self.presence(agent_id)}"
                        )
                next_send = time.monotonic() + min(resend, remaining)
                while (wait := next_send - time.monotonic()) > 0:
                    try:
                        async with asyncio.timeout(wait):
                            event = await waiter.events.get()
                    except TimeoutError:
                        break
                    if isinstance(event, ResultEvent):
                        if event.error:
                            raise StepFailed(f"agent {agent_id}: {event.error}")
                        if event.replayed:
                            await log(f"agent {agent_id} answered command {command_id} from its journal")
                        return event
                    if isinstance(event, RejectedEvent):
                        raise StepFailed(f"agent {agent_id} rejected command {command_id}: {event.reason}")
                    if isinstance(event, ProgressEvent):
                        await log(f"[{agent_id}] {event.message}")
                    elif isinstance(event, AcceptedEvent) and sends <= 1:
                        await log(f"agent {agent_id} accepted command {command_id}")
        finally:
            self._waiters.pop(command_id, None)

    async def _send(self, agent_id: str, payload: str) -> bool:
        return await self.session.publish(commands_topic(agent_id), payload)

    async def close(self) -> None:
        return None
