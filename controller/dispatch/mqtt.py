"""Commands to agents over MQTT: signed, QoS 1, re-sent with the same id until a result comes back.

A QoS 1 acknowledgement only means the broker took the message: the answer is the agent's result event,
matched by command id. Agents' presence (retained, with a last will) tells an operator why a command
had no answer ("agent h3 offline since 12:03:04").
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

from obstop.agent.mqtt_session import Broker, Session
from obstop.agent.protocol import (
    TOPIC_PREFIX,
    AcceptedEvent,
    AnyEvent,
    CommandKind,
    EventEnvelope,
    ObserverTarget,
    Presence,
    ProbeArgs,
    ProbeReport,
    ProgressEvent,
    RejectedEvent,
    ResultEvent,
    StopArgs,
    StopOptions,
    StopReport,
    commands_topic,
    new_command,
)
from obstop.agent.signing import load_private, sign
from obstop.controller.config import ControllerConfig
from obstop.controller.dispatch import Log
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

    def serves(self, host: str) -> bool:
        return True  # any host not agentless is served by the agent named after it (or routed in [agents])

    def agent_for(self, host: str) -> str:
        return self.routes.get(host, host)

    # --- connection ------------------------------------------------------------------------------

    async def run(self, stopping: asyncio.Event) -> None:
        await self.session.run(stopping)

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

    def _on_event(self, agent_id: str, payload: bytes) -> None:
        try:
            event = EventEnvelope.parse(payload)
        except ValueError:
            logger.warning("unreadable event from agent %s", agent_id)
            return
        if event.agent_id != agent_id:
            logger.warning("event on agent %s's topic claims agent %s; ignored", agent_id, event.agent_id)
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

    async def _call(
        self,
        command_id: str,
        host: str,
        kind: CommandKind,
        args: ProbeArgs | StopArgs,
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
