"""Commands to agents over MQTT: signed, QoS 1, re-sent with the same id until a result comes back.

A QoS 1 acknowledgement only means the broker took the message: the answer is the agent's result event.
Every event is taken in by `_on_event`, the one intake: it is accepted only when it parses, is signed by
the key of the agent named in its topic, names that agent, and, when it answers a command, answers the
waiting command itself (addressed to that agent, with that command's digest; a rejection also names the
copy that was sent). Anything else is logged (once per cause per minute) and changes nothing.

Agents' presence (retained, with a last will) is unsigned and only advisory: it explains why a command had
no answer ("agent h3 offline since 12:03:04") and never decides anything. An agent that comes online is
told which observers to watch; their state comes back as signed events, only from the agent that serves
them and only for the latest watch (an older one may predate a refresh).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from obstop.agent.mqtt_session import Broker, Session, client_id
from obstop.agent.protocol import (
    AnyArgs,
    AnyEvent,
    CancelArgs,
    CancelReport,
    CommandKind,
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
    agents_root,
    commands_topic,
    new_command,
    parse_event,
    parse_topic,
)
from obstop.agent.signing import AgentKeys, load_private, sign
from obstop.controller.config import ControllerConfig
from obstop.controller.dispatch import Log, WatchPlan
from obstop.controller.dispatch.agent_words import PROGRESS_TOTAL, Waiter, clean, clean_probe
from obstop.controller.dispatch.watches import Watches
from obstop.controller.errors import ConfigError, StepFailed
from obstop.controller.metrics import NULL, Metrics

logger = logging.getLogger("obstop.mqtt")

# commands whose acceptance the step's log shows (those that act): logged at the agent's first word on them
ANNOUNCED = frozenset({CommandKind.STOP_OBSERVER, CommandKind.START_OBSERVER, CommandKind.CANCEL_COMMAND})
MAX_PRESENCE = 10_000  # agents whose presence is remembered (topics name any id a client likes)


@dataclass
class _Seen:
    state: Presence
    since: datetime


class MqttDispatcher:
    def __init__(self, config: ControllerConfig) -> None:
        if config.signing.private_key is None:
            raise ConfigError(
                "[mqtt] is set but [signing] private_key is not: agents accept only signed commands"
            )
        if config.signing.agent_keys_dir is None:
            raise ConfigError(
                "[mqtt] is set but [signing] agent_keys_dir is not: results are accepted only when signed "
                "by the agent's own key (AGENT_ID.pub in that directory)"
            )
        self.config = config
        self.key = load_private(config.signing.private_key)
        self.agent_keys = AgentKeys(config.signing.agent_keys_dir)
        self.routes = dict(config.agents.via)
        cfg = config.mqtt
        assert cfg.url is not None
        self.prefix = cfg.topic_prefix
        root = agents_root(self.prefix)
        self.session = Session(
            Broker.of(cfg.broker_urls, cfg.username, cfg.password_file, cfg.ca_file),
            client_id=cfg.client_id or client_id(self.prefix, "controller", config.engine.controller_id),
            subscriptions=[f"{root}/+/events", f"{root}/+/presence"],
            on_message=self._on_message,
        )
        self._waiters: dict[str, Waiter] = {}
        self._presence: OrderedDict[str, _Seen] = OrderedDict()
        self._refused: dict[str, str] = {}  # agent -> the last reason one of its events was refused
        self.watches = Watches(self.agent_for, self.key, config.signing.command_ttl_seconds, self._send)
        self.metrics: Metrics = NULL  # set by the daemon
        self._count_connections()

    def _count_connections(self) -> None:
        """Each connection the session makes is counted (all but the first are reconnects)."""
        hook = self.session.on_connect

        async def counted(client: Any) -> None:
            self.metrics.mqtt_connected()
            if hook is not None:
                await hook(client)

        self.session.on_connect = counted

    def serves(self, host: str) -> bool:
        return True  # any host not agentless is served by the agent named after it (or routed in [agents])

    def agent_for(self, host: str) -> str:
        return self.routes.get(host, host)

    # --- connection ------------------------------------------------------------------------------

    async def run(self, stopping: asyncio.Event) -> None:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self.session.run(stopping), name="mqtt-session")
            tg.create_task(self.watches.run(stopping), name="mqtt-watches")

    # --- the watch of observers (dispatch/watches.py) ------------------------------------------

    def watch(self, plan: WatchPlan) -> None:
        self.watches.plan(plan)

    def refresh(self, hosts: Collection[str]) -> None:
        self.watches.refresh(hosts)

    def _on_message(self, topic: str, payload: bytes) -> None:
        parsed = parse_topic(topic, self.prefix)
        if parsed is None:
            return
        agent_id, kind = parsed
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
            self._presence.move_to_end(agent_id)
            while len(self._presence) > MAX_PRESENCE:
                self._presence.popitem(last=False)
            logger.info("agent %s is %s", agent_id, state)
            if self.watches.knows(agent_id):  # agents of the inventory only: topics can name any id
                self.metrics.agent_presence(agent_id, state is Presence.ONLINE)
            if state is Presence.ONLINE:
                self.watches.online(agent_id)

    def _refuse(self, agent_id: str, cause: str, message: str, *args: object) -> None:
        if len(self._refused) >= MAX_PRESENCE:
            self._refused.clear()  # bounded: topics can name any agent id
        self._refused[agent_id] = cause
        self.session.throttle.warn(
            f"refused:{cause}", "refused an event on agent %s's topic: " + message, agent_id, *args
        )

    def _on_event(self, agent_id: str, payload: bytes) -> None:
        """The one intake of agent events: verified and bound, or refused. Cheap checks come first, so a
        flood of forgeries costs no signature work."""
        try:
            event = parse_event(payload)
        except ValueError as exc:
            self._refuse(agent_id, "unreadable", "unreadable (%s)", clean(str(exc).splitlines()[0], 120))
            return
        if event.agent_id != agent_id:
            self._refuse(agent_id, "wrong agent", "it claims to come from agent %s", event.agent_id)
            return
        if isinstance(event, ObserverStateEvent):
            if not self.watches.current(event, agent_id):
                return  # an older watch's report, maybe probed before a refresh (no signature work)
            if self._verified(event, agent_id):
                self.watches.observed(agent_id, event)
            return
        if event.command_id is None:
            cause = f"unauthenticated:{agent_id}"
            if isinstance(event, RejectedEvent) and not self.session.throttle.due(cause):
                return  # it would only make a log line, and that line was written this minute
            if self._verified(event, agent_id) and isinstance(event, RejectedEvent):
                self.session.throttle.warn(
                    cause,
                    "agent %s refused a command it could not authenticate: %s (someone else writes to its "
                    "commands topic?)",
                    agent_id,
                    clean(event.reason),
                )
            return
        waiter = self._waiters.get(event.command_id)
        if waiter is None:  # a late copy of an answer already taken, or a guess: nothing awaits it
            logger.debug("agent %s: event for command %s, which no step awaits", agent_id, event.command_id)
            return
        if waiter.agent_id != agent_id:
            self._refuse(
                agent_id,
                "misrouted",
                "it answers command %s, sent to agent %s",
                event.command_id,
                waiter.agent_id,
            )
            return
        if event.command_digest != waiter.digest:
            self._refuse(agent_id, "digest", "it answers another command than %s", event.command_id)
            return
        if not self._verified(event, agent_id):
            return
        if isinstance(event, RejectedEvent) and event.issued_at != waiter.issued_at:
            self._refuse(agent_id, "stale copy", "it rejects another copy of command %s", event.command_id)
            return
        waiter.events.put_nowait(event)

    def _verified(self, event: AnyEvent, agent_id: str) -> bool:
        why = self.agent_keys.verify(event, agent_id)
        if why is not None:
            self._refuse(agent_id, "signature", "%s", why)
            return False
        self._refused.pop(agent_id, None)
        return True

    def presence(self, agent_id: str) -> str:
        seen = self._presence.get(agent_id)
        refused = self._refused.get(agent_id)
        note = f"; events on its topic were refused ({refused}: see the controller log)" if refused else ""
        if seen is None:
            return f"agent {agent_id} has not been seen since the controller started{note}"
        stamp = seen.since.astimezone().strftime("%Y-%m-%d %H:%M:%S")
        if seen.state is Presence.OFFLINE:
            return f"agent {agent_id} offline since {stamp}{note}"
        return f"agent {agent_id} online since {stamp} but gave no answer{note}"

    # --- commands --------------------------------------------------------------------------------

    async def probe(self, command_id: str, target: ObserverTarget, log: Log, deadline: float) -> ProbeReport:
        result = await self._call(
            command_id, target.host, CommandKind.PROBE_OBSERVER, ProbeArgs(target=target), log, deadline
        )
        if result.probe is None:
            raise StepFailed(f"agent answered command {command_id} without a probe report")
        return clean_probe(result.probe)

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
        report = result.stop
        return report.model_copy(
            update={"reason": report.reason and clean(report.reason), "probe": clean_probe(report.probe)}
        )

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
        # valid until the step stops waiting for it, never later: a copy queued for an offline agent, or
        # one that arrives after the step failed, is rejected as expired instead of acted on late
        ttl = max(1.0, min(self.config.signing.command_ttl_seconds, deadline - time.monotonic()))
        command = sign(new_command(agent_id, kind, args, command_id=command_id, ttl=ttl), self.key)
        payload = command.model_dump_json()
        waiter = self._waiters[command_id] = Waiter(agent_id, command.digest(), command.issued_at)
        resend = self.config.stop.resend_interval
        sends = 0
        told = kind not in ANNOUNCED  # acceptance logged once, for the commands that act
        began, outcome = time.monotonic(), "no_answer"
        try:
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise StepFailed(
                        f"no result for command {command_id} from agent {agent_id}: {self.presence(agent_id)}"
                    )
                # a broker slow to acknowledge (a cluster electing a new leader) holds a publish at most
                # until the step gives up, so that the step still says why (R3 on NATS found it silent)
                if await self._send(agent_id, payload, timeout=min(10.0, remaining)):
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
                    if not told and sends <= 1 and not isinstance(event, RejectedEvent):
                        told = not (isinstance(event, ResultEvent) and event.replayed)
                        if told:  # the agent's first word on it, whichever: "accepted" is not sent ahead
                            await log(f"agent {agent_id} accepted command {command_id}")
                    if isinstance(event, ResultEvent):
                        outcome = "error" if event.error else "ok"
                        if event.error:
                            raise StepFailed(f"agent {agent_id}: {clean(event.error)}")
                        if event.replayed:
                            await log(f"agent {agent_id} answered command {command_id} from its journal")
                        return event
                    if isinstance(event, RejectedEvent):
                        outcome = "error"
                        raise StepFailed(
                            f"agent {agent_id} rejected command {command_id}: {clean(event.reason)}"
                        )
                    if isinstance(event, ProgressEvent):
                        if waiter.take_progress():
                            await log(f"[{agent_id}] {clean(event.message)}")
                        elif waiter.progress == PROGRESS_TOTAL + 1:
                            await log(f"[{agent_id}] further progress of command {command_id} not logged")
        finally:
            self.metrics.command_answered(str(kind), outcome, time.monotonic() - began)
            if self._waiters.get(command_id) is waiter:
                del self._waiters[command_id]

    async def _send(self, agent_id: str, payload: str, timeout: float = 10.0) -> bool:
        return await self.session.publish(commands_topic(agent_id, self.prefix), payload, timeout=timeout)

    async def close(self) -> None:
        return None
