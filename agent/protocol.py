"""The controller <-> agent command protocol, version 1.

Shared by both sides: the controller imports this module, nothing here imports the controller.
Everything the protocol needs (ids, expiry, signature) lives in the JSON payload, never in MQTT 5
properties, so it works over MQTT 3.1.1 brokers too.

    Command  (controller -> agent, signed by the controller)
             kind = probe_observer | stop_observer | start_observer | cancel_command | watch_observers
    Event    (agent -> controller, signed by the agent)
             kind = accepted | progress | result | rejected | observer_state

Topics live under a per-deployment prefix (`[mqtt] topic_prefix`, default "obstop"), so several
deployments share one broker: `{prefix}/v1/agents/{agent_id}/commands|events|presence`.

An event names its agent and the digest of the command it answers (`Command.digest()`: what the command
means, not its timestamps, so a re-sent command is answered by the same digest), and is signed by the
agent's own key. Untrusted bytes are parsed by pydantic's JSON parser only (it bounds nesting).
"""

from __future__ import annotations

import hashlib
import json
import posixpath
import re
import signal
import unicodedata
import uuid
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, field_validator

PROTOCOL_VERSION: Literal[1] = 1
DEFAULT_TOPIC_PREFIX = "obstop"
# MQTT topic levels without wildcards, empty levels or anything a shell or a log would mangle
TOPIC_PREFIX_PATTERN = r"^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$"
AGENT_ID_PATTERN = r"^[A-Za-z0-9_.-]+$"
_AGENT_ID = re.compile(AGENT_ID_PATTERN)


def agents_root(prefix: str = DEFAULT_TOPIC_PREFIX) -> str:
    return f"{prefix}/v1/agents"


TOPIC_PREFIX = agents_root()  # the default deployment's root, for tools that know no prefix


def commands_topic(agent_id: str, prefix: str = DEFAULT_TOPIC_PREFIX) -> str:
    return f"{agents_root(prefix)}/{agent_id}/commands"


def events_topic(agent_id: str, prefix: str = DEFAULT_TOPIC_PREFIX) -> str:
    return f"{agents_root(prefix)}/{agent_id}/events"


def presence_topic(agent_id: str, prefix: str = DEFAULT_TOPIC_PREFIX) -> str:
    return f"{agents_root(prefix)}/{agent_id}/presence"


def valid_agent_id(agent_id: str) -> bool:
    return len(agent_id) <= 128 and agent_id not in (".", "..") and bool(_AGENT_ID.match(agent_id))


def parse_topic(topic: str, prefix: str = DEFAULT_TOPIC_PREFIX) -> tuple[str, str] | None:
    """(agent_id, "commands" | "events" | "presence" | other) of a topic under prefix, or None."""
    root = agents_root(prefix) + "/"
    if not topic.startswith(root):
        return None
    agent_id, sep, kind = topic[len(root) :].partition("/")
    if not sep or "/" in kind or not valid_agent_id(agent_id):
        return None
    return agent_id, kind


def canonical(body: Any) -> bytes:
    """The bytes a signature covers: sorted keys, no spaces, ASCII."""
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def check_home_path(v: str) -> str:
    """An observer's home path as the inventory and the agent take it: absolute, normalized, not `/`, no
    control characters (it goes into paths, shell words and logs)."""
    if any(unicodedata.category(c) == "Cc" for c in v):
        raise ValueError("home_path must not contain control characters")
    if not v.startswith("/"):
        raise ValueError("home_path must be absolute")
    if v.strip("/") == "":
        raise ValueError("home_path must not be /")
    normal = posixpath.normpath(v)
    if normal != v or "//" in v:
        raise ValueError(f"home_path must be normalized (no //, /./ or /../): write {normal!r}")
    return v


def utcnow() -> datetime:
    return datetime.now(UTC)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ObserverTarget(_Model):
    """Where one observer lives: the facts its identity is proved against."""

    host: str = Field(min_length=1, description="host name as in the inventory")
    ip: str = Field(min_length=1)
    home_path: str = Field(min_length=1, max_length=4096)
    sql_port: int = Field(default=2881, ge=1, le=65535)
    rpc_port: int = Field(default=2882, ge=1, le=65535)

    @field_validator("home_path")
    @classmethod
    def _absolute(cls, v: str) -> str:
        return check_home_path(v.rstrip("/") if v.strip("/") else v)

    @property
    def pid_file(self) -> str:
        return f"{self.home_path}/run/observer.pid"

    @property
    def binary(self) -> str:
        return f"{self.home_path}/bin/observer"

    @property
    def ports(self) -> tuple[int, int]:
        return (self.sql_port, self.rpc_port)


class StopOptions(_Model):
    """Bounds of the stop procedure. Every wait is bounded."""

    signal: str = Field(default="SIGTERM", description="first signal sent")
    term_timeout: float = Field(default=10.0, gt=0, le=3600, description="seconds to wait for exit after it")
    kill_timeout: float = Field(default=10.0, gt=0, le=3600, description="seconds to wait after SIGKILL")
    port_timeout: float = Field(default=30.0, gt=0, le=3600, description="seconds to wait for free ports")

    @field_validator("signal")
    @classmethod
    def _known_signal(cls, v: str) -> str:
        name = v.upper() if v.upper().startswith("SIG") else "SIG" + v.upper()
        if name not in signal.Signals.__members__:
            raise ValueError(f"unknown signal {v!r}")
        return name


class ObserverState(StrEnum):
    RUNNING = "RUNNING"
    STOPPED = "STOPPED"
    REFUSED = "REFUSED"


class ProbeReport(_Model):
    """What a probe found. REFUSED carries the reason; nothing is ever signalled on REFUSED."""

    host: str
    home_path: str
    state: ObserverState
    pid: int | None = None
    start_time: float | None = None
    user: str | None = None
    ports_held: list[int] = Field(default_factory=list)
    stale_pid_file: bool = False
    reason: str | None = None


class StopReport(_Model):
    """The facts of one stop: what was signalled, how long each phase took, what is still wrong."""

    host: str
    home_path: str
    ok: bool
    already_stopped: bool = False
    pid: int | None = None
    signals: list[str] = Field(default_factory=list)
    time_to_exit_s: float | None = None
    time_to_ports_free_s: float | None = None
    pid_file_removed: bool = False
    reason: str | None = None
    probe: ProbeReport


class StartOptions(_Model):
    """Bounds of the start procedure. Every wait is bounded."""

    launch_timeout: float = Field(
        default=30.0, gt=0, le=3600, description="seconds for bin/observer to return"
    )
    ready_timeout: float = Field(
        default=120.0, gt=0, le=86400, description="seconds until it listens on both ports and answers SQL"
    )


class StartReport(_Model):
    """The facts of one start: whether it was launched (by this command), when it listened, what is wrong."""

    host: str
    home_path: str
    ok: bool
    already_running: bool = False
    launched: bool = False
    pid: int | None = None
    user: str | None = None
    time_to_ready_s: float | None = None
    reason: str | None = None
    probe: ProbeReport


class CancelReport(_Model):
    """What cancelling a command did at the agent. `signals` were sent before the cancel was journalled."""

    command_id: str
    found: bool = Field(description="the agent knew the command (ran it, or had it queued)")
    finished: bool = Field(default=False, description="it had already ended: nothing was cancelled")
    signals: list[str] = Field(default_factory=list)
    detail: str = ""


class ObserverStatus(_Model):
    """One watched observer as the agent saw it."""

    host: str
    home_path: str
    state: ObserverState
    pid: int | None = None
    listening: bool = False
    reason: str | None = None


class CommandKind(StrEnum):
    PROBE_OBSERVER = "probe_observer"
    STOP_OBSERVER = "stop_observer"
    START_OBSERVER = "start_observer"
    CANCEL_COMMAND = "cancel_command"
    WATCH_OBSERVERS = "watch_observers"


class ProbeArgs(_Model):
    target: ObserverTarget


class StopArgs(_Model):
    target: ObserverTarget
    options: StopOptions = Field(default_factory=StopOptions)


class StartArgs(_Model):
    target: ObserverTarget
    options: StartOptions = Field(default_factory=StartOptions)


class CancelArgs(_Model):
    """Cancel a command: the agent journals the cancel, stops waiting, and never signals for it again."""

    command_id: str = Field(min_length=8, max_length=128, pattern=r"^[A-Za-z0-9_.:-]+$")


class WatchArgs(_Model):
    """Observers to probe every `probe_interval` s; their state is reported on change and every
    `report_interval` s. A new watch replaces the last one and is answered by a full report at once."""

    targets: list[ObserverTarget] = Field(max_length=256)
    probe_interval: float = Field(default=5.0, ge=0.05, le=3600)
    report_interval: float = Field(default=30.0, ge=0.1, le=86400)


AnyArgs = ProbeArgs | StopArgs | StartArgs | CancelArgs | WatchArgs


class Command(_Model):
    """A signed instruction to one agent. The signature covers every other field."""

    v: Literal[1] = PROTOCOL_VERSION
    command_id: str = Field(min_length=8, max_length=128, pattern=r"^[A-Za-z0-9_.:-]+$")
    agent_id: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.-]+$")
    kind: CommandKind
    args: dict[str, Any]
    issued_at: datetime
    expires_at: datetime
    signature: str | None = None

    def signing_payload(self) -> bytes:
        """Canonical JSON of everything but the signature: sorted keys, no spaces, UTC times."""
        return canonical(self.model_dump(mode="json", exclude={"signature"}))

    def digest(self) -> str:
        """What an event answering this command names: a hash of its meaning (id, target agent, kind,
        arguments), not of its timestamps, so the answer to a re-sent copy names the same digest."""
        body = {"v": self.v, "command_id": self.command_id, "agent_id": self.agent_id}
        body |= {"kind": str(self.kind), "args": self.args}
        return hashlib.sha256(canonical(body)).hexdigest()

    def meaning(self) -> tuple[str, str, str]:
        """What the command asks for. A re-send (same id, new timestamps and signature, e.g. from a restarted
        controller) means the same; the same id asking for something else does not."""
        return (self.agent_id, self.kind, json.dumps(self.args, sort_keys=True))

    def probe_args(self) -> ProbeArgs:
        return ProbeArgs.model_validate(self.args)

    def stop_args(self) -> StopArgs:
        return StopArgs.model_validate(self.args)

    def start_args(self) -> StartArgs:
        return StartArgs.model_validate(self.args)

    def cancel_args(self) -> CancelArgs:
        return CancelArgs.model_validate(self.args)

    def watch_args(self) -> WatchArgs:
        return WatchArgs.model_validate(self.args)


def new_command(
    agent_id: str,
    kind: CommandKind,
    args: AnyArgs,
    *,
    command_id: str | None = None,
    ttl: float = 300.0,
) -> Command:
    now = utcnow()
    return Command(
        command_id=command_id or uuid.uuid4().hex,
        agent_id=agent_id,
        kind=kind,
        args=args.model_dump(mode="json"),
        issued_at=now,
        expires_at=now + timedelta(seconds=ttl),
    )


class EventKind(StrEnum):
    ACCEPTED = "accepted"
    PROGRESS = "progress"
    RESULT = "result"
    REJECTED = "rejected"
    OBSERVER_STATE = "observer_state"


class _EventBase(_Model):
    v: Literal[1] = PROTOCOL_VERSION
    agent_id: str = Field(max_length=128, pattern=AGENT_ID_PATTERN)
    command_id: str | None = Field(max_length=128)
    command_digest: str | None = Field(
        default=None, max_length=64, description="Command.digest() of the command this event answers"
    )
    at: datetime = Field(default_factory=utcnow)
    signature: str | None = Field(default=None, max_length=256, description="by the agent's own key")

    def signing_payload(self) -> bytes:
        return canonical(self.model_dump(mode="json", exclude={"signature"}))


class AcceptedEvent(_EventBase):
    kind: Literal[EventKind.ACCEPTED] = EventKind.ACCEPTED


class ProgressEvent(_EventBase):
    kind: Literal[EventKind.PROGRESS] = EventKind.PROGRESS
    message: str


class ResultEvent(_EventBase):
    kind: Literal[EventKind.RESULT] = EventKind.RESULT
    probe: ProbeReport | None = None
    stop: StopReport | None = None
    start: StartReport | None = None
    cancel: CancelReport | None = None
    cancelled: bool = Field(default=False, description="the command was cancelled before it ended")
    error: str | None = Field(default=None, description="the executor could not run at all (e.g. SSH down)")
    replayed: bool = Field(default=False, description="answered from the journal, not executed again")


class RejectedEvent(_EventBase):
    """A command refused. One the agent could not authenticate names no command (command_id None): its id
    is the sender's word only. One it authenticated names the id, digest and issue time of that copy."""

    kind: Literal[EventKind.REJECTED] = EventKind.REJECTED
    reason: str
    issued_at: datetime | None = Field(default=None, description="of the refused copy of the command")


class ObserverStateEvent(_EventBase):
    """The watched observers' state: on a change (`full` false: only those that changed) and every
    report interval (`full` true). `command_id` is the watch it answers."""

    kind: Literal[EventKind.OBSERVER_STATE] = EventKind.OBSERVER_STATE
    observers: list[ObserverStatus] = Field(max_length=256)
    full: bool = False


AnyEvent = AcceptedEvent | ProgressEvent | ResultEvent | RejectedEvent | ObserverStateEvent
Event = Annotated[AnyEvent, Field(discriminator="kind")]


_EVENTS: TypeAdapter[AnyEvent] = TypeAdapter(Event)


def parse_event(raw: bytes | str) -> AnyEvent:
    """Any event by its kind; raises pydantic's ValidationError (a ValueError) on anything else, however
    deep, malformed or not UTF-8 the input is: pydantic's parser bounds nesting, json.loads does not."""
    return _EVENTS.validate_json(raw)


class EventEnvelope:
    """Parses any event by its kind (see parse_event)."""

    @staticmethod
    def parse(raw: bytes | str) -> AnyEvent:
        return parse_event(raw)


class Presence(StrEnum):
    ONLINE = "online"
    OFFLINE = "offline"
