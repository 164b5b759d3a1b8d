"""`obstop agent`: receives signed commands over MQTT, runs them once, reports over MQTT.

One reader of `client.messages` hands each command to a task of the daemon's TaskGroup. Every command
is verified (signature, address, expiry), journalled before it runs, and answered from the journal when
its id comes again. Commands cut off by a crash are finished at the next start, without signalling twice.

Every event goes out through `_publish`, which names the command it answers by id and digest and signs it
with this agent's own key (made at first start when the config names none). A command that cannot be
authenticated (malformed, unsigned, badly signed) is rejected without naming any id taken from it: only
the controller's signature makes an id worth echoing. Whatever one message does, the agent logs it and
reads the next.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import signal
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiomqtt
import structlog
from pydantic import ValidationError

from obstop.agent import procedure, sdnotify, starting
from obstop.agent.cancel import CANCEL_MARK, CancelToken
from obstop.agent.daemon.config import AgentConfig
from obstop.agent.daemon.journal import CommandMarks, Entry, Journal
from obstop.agent.daemon.watch import Watcher
from obstop.agent.errors import ExecutorError
from obstop.agent.executors.host import Host
from obstop.agent.executors.local import LocalHost
from obstop.agent.mqtt_session import Broker, Session, client_id
from obstop.agent.protocol import (
    AcceptedEvent,
    AnyEvent,
    CancelReport,
    Command,
    CommandKind,
    Presence,
    ProgressEvent,
    RejectedEvent,
    ResultEvent,
    commands_topic,
    events_topic,
    presence_topic,
)
from obstop.agent.signing import Rejected, load_or_create, load_public, sign, verify

log = logging.getLogger("obstop.agent")

MAX_PROGRESS_LINES = 100  # per command: the procedure says a handful
MAX_PROGRESS_CHARS = 500


class Agent:
    def __init__(self, config: AgentConfig) -> None:
        self.config = config
        self.id = config.agent_id
        self.key = load_public(config.controller_public_key)
        self.signing_key, public, made = load_or_create(config.key_path)
        if made:
            log.warning(
                "agent %s made its event-signing key %s; give the controller its public key: copy %s to "
                "the controller's [signing] agent_keys_dir as %s.pub",
                self.id,
                config.key_path,
                public,
                self.id,
            )
        else:
            log.info("agent %s signs its events with %s (public key %s)", self.id, config.key_path, public)
        self.journal = Journal(Path(config.state_dir) / "journal.db")
        self.hosts: dict[str, Host] = {config.local_name: LocalHost(config.local_name)}
        handshakes = asyncio.Semaphore(8)
        for h in config.ssh:
            self.hosts[h.host] = h.open(handshakes)
        cfg = config.mqtt
        self.prefix = cfg.topic_prefix
        self.presence_topic = presence_topic(self.id, self.prefix)
        self.events_topic = events_topic(self.id, self.prefix)
        self.session = Session(
            Broker.of(cfg.broker_urls, cfg.username or self.id, cfg.password_file, cfg.ca_file),
            client_id=client_id(self.prefix, "agent", self.id),
            subscriptions=[commands_topic(self.id, self.prefix)],
            on_message=self._on_message,
            will=aiomqtt.Will(self.presence_topic, Presence.OFFLINE.value, qos=1, retain=True),
            on_connect=self._online,
            on_close=self._offline,
            loops=[("watchdog", self._watchdog)],
            max_publishing=16,
        )
        self._work = asyncio.Semaphore(config.max_concurrent_commands)
        self._inflight: dict[str, asyncio.Task[None]] = {}
        self._digests: dict[str, tuple[Command, str]] = {}  # command id -> (that command, its digest)
        self._tokens: dict[str, CancelToken] = {}  # cancel tokens of running stops and starts
        self._tg: asyncio.TaskGroup | None = None
        self.watcher = Watcher(self.id, self.hosts, self._publish)

    # --- lifecycle -------------------------------------------------------------------------------

    async def run(self, stopping: asyncio.Event) -> None:
        try:
            async with asyncio.TaskGroup() as tg:
                self._tg = tg
                for entry in await self.journal.unfinished():
                    cmd = Command.model_validate_json(entry.payload)
                    if cmd.expires_at <= datetime.now(UTC):
                        await self._expired_unfinished(cmd)
                        continue
                    log.info("finishing command %s cut off by a restart", cmd.command_id)
                    self._spawn(cmd, entry.marks)
                session = tg.create_task(self.session.run(stopping), name="mqtt-session")
                watcher = tg.create_task(self.watcher.run(), name="watcher")
                await stopping.wait()
                watcher.cancel()
                sdnotify.notify("STOPPING=1")
                if self._inflight:
                    log.info("waiting up to 10s for %d running command(s)", len(self._inflight))
                    await asyncio.wait(list(self._inflight.values()), timeout=10)
                for t in self._inflight.values():
                    t.cancel()  # journalled without a result: finished at the next start
                await session
        finally:
            for h in self.hosts.values():
                await h.close()
            self.journal.close()

    async def _online(self, client: aiomqtt.Client) -> None:
        await client.publish(self.presence_topic, Presence.ONLINE.value, qos=1, retain=True)
        log.info("agent %s online; serving %s", self.id, ", ".join(sorted(self.hosts)))
        sdnotify.notify("READY=1")

    async def _offline(self, client: aiomqtt.Client) -> None:
        await client.publish(self.presence_topic, Presence.OFFLINE.value, qos=1, retain=True)

    async def _watchdog(self, client: aiomqtt.Client) -> None:
        """Pings systemd only after the broker acknowledged a publish: proof the link is healthy."""
        interval = sdnotify.watchdog_interval()
        if interval is None:
            return
        while True:
            await client.publish(
                self.presence_topic, Presence.ONLINE.value, qos=1, retain=True, timeout=interval
            )
            sdnotify.notify("WATCHDOG=1")
            await asyncio.sleep(interval)

    def _on_message(self, topic: str, payload: bytes) -> None:
        assert self._tg is not None
        self._tg.create_task(self._guarded(payload), name="command")

    async def _guarded(self, payload: bytes) -> None:
        """One command's handling, whatever it raises, never ends the daemon."""
        try:
            await self._handle(payload)
        except Exception as exc:
            self.session.throttle.warn("handle", "a command could not be handled: %r", exc)

    # --- commands --------------------------------------------------------------------------------

    async def _handle(self, payload: bytes) -> None:
        try:
            cmd = Command.model_validate_json(payload)  # pydantic's parser: nesting bounded
        except ValidationError as exc:
            await self._reject(None, f"malformed command: {_first_error(exc)}")
            return
        try:
            verify(cmd, self.key, self.id, skew=self.config.clock_skew_seconds)
        except Rejected as exc:
            # an id is echoed only from a command the controller signed: anyone can write any id
            await self._reject(cmd if exc.authenticated else None, str(exc))
            return
        if cmd.kind is CommandKind.WATCH_OBSERVERS:
            # it replaces what is watched, and is answered by state events: nothing to journal or replay
            try:
                self.watcher.watch(cmd.command_id, cmd.watch_args())
            except ValidationError as exc:
                log.warning("command %s: a watch of nothing: %s", cmd.command_id, _first_error(exc))
            return
        if cmd.kind is CommandKind.PROBE_OBSERVER:
            # a probe acts on nothing: it is journalled once, with its result (an id seen before is
            # answered from the journal then); a copy that comes while it runs is answered by its result
            if cmd.command_id not in self._inflight:
                log.debug("command %s: %s", cmd.command_id, cmd.kind)
                self._spawn(cmd, ())
            return
        entry = await self.journal.begin(cmd.command_id, cmd.model_dump_json())
        if entry.new:
            # no "accepted" event ahead: its first progress line or its result says it (one event less)
            log.info("command %s: %s accepted", cmd.command_id, cmd.kind)
            self._spawn(cmd, entry.marks)
        elif await self._seen(cmd, entry):
            pass
        elif cmd.command_id in self._inflight:
            await self._publish(AcceptedEvent(agent_id=self.id, command_id=cmd.command_id), cmd)
        else:
            self._spawn(cmd, entry.marks)

    async def _seen(self, cmd: Command, entry: Entry) -> bool:
        """An id the journal holds already: True when that answers it (another command under the same id
        is rejected; one that ended is answered with its recorded result, never run again)."""
        if Command.model_validate_json(entry.payload).meaning() != cmd.meaning():
            await self._reject(cmd, "command id reused for a different command")
            return True
        if entry.result is None:
            return False
        log.info("command %s seen again: answering the recorded result, not running it again", cmd.command_id)
        recorded = ResultEvent.model_validate(entry.result).model_copy(update={"replayed": True})
        await self._publish(recorded, cmd)
        return True

    async def _expired_unfinished(self, cmd: Command) -> None:
        """A command cut off by a restart and expired since: the controller no longer waits for it, so
        it is not finished (no signal, no launch after its step ended); its journalled result says so."""
        why = (
            f"expired at {cmd.expires_at.isoformat()} while this agent was down, before it finished: "
            "not run again"
        )
        log.warning("command %s %s", cmd.command_id, why)
        result = ResultEvent(agent_id=self.id, command_id=cmd.command_id, error=why)
        await self.journal.finish(cmd.command_id, result.model_dump(mode="json"))

    def _spawn(self, cmd: Command, marks: tuple[str, ...]) -> None:
        """marks: what the journal holds for this id already (a cancel that came first, a signal sent
        before a restart)."""
        assert self._tg is not None
        self._inflight[cmd.command_id] = self._tg.create_task(
            self._execute(cmd, marks), name=f"cmd-{cmd.command_id}"
        )

    async def _execute(self, cmd: Command, marks: tuple[str, ...]) -> None:
        # what this command's task logs names it (and the controller's task and subtask, from its id)
        ids = TASK_IN_ID.search(cmd.command_id)
        structlog.contextvars.bind_contextvars(
            commandId=cmd.command_id,
            **({"taskId": int(ids[1]), "subtaskId": int(ids[2])} if ids else {}),
        )
        # a cancel or a watch never queues behind the work it is about
        light = cmd.kind in (CommandKind.CANCEL_COMMAND, CommandKind.WATCH_OBSERVERS)
        try:
            async with contextlib.nullcontext() if light else self._work:
                result = await self._run_command(cmd, marks)
            answer = result.model_dump(mode="json")
            if cmd.kind is CommandKind.PROBE_OBSERVER:
                record = self.journal.record(cmd.command_id, cmd.model_dump_json(), answer)
                seen = await asyncio.shield(record)
                if seen is not None and await self._seen(cmd, seen):
                    return
                if seen is not None:  # begun before this version journalled probes at their end
                    await asyncio.shield(self.journal.finish(cmd.command_id, answer))
            else:
                await asyncio.shield(self.journal.finish(cmd.command_id, answer))
            if cmd.kind is not CommandKind.WATCH_OBSERVERS:  # a watch is answered by state events
                await self._publish(result, cmd)
        finally:
            self._inflight.pop(cmd.command_id, None)
            self._digests.pop(cmd.command_id, None)

    async def _run_command(self, cmd: Command, marks: tuple[str, ...]) -> ResultEvent:
        base: dict[str, Any] = {"agent_id": self.id, "command_id": cmd.command_id}
        sent = 0

        async def progress(line: str) -> None:
            nonlocal sent
            sent += 1
            if sent <= MAX_PROGRESS_LINES:
                await self._publish(ProgressEvent(**base, message=line[:MAX_PROGRESS_CHARS]), cmd)

        try:
            match cmd.kind:
                case CommandKind.PROBE_OBSERVER:
                    target = cmd.probe_args().target
                    return ResultEvent(**base, probe=await procedure.probe(self._host(target.host), target))
                case CommandKind.STOP_OBSERVER:
                    args = cmd.stop_args()
                    token = self._token(cmd.command_id, marks)
                    report = await procedure.stop(
                        self._host(args.target.host),
                        args.target,
                        args.options,
                        progress=progress,
                        journal=CommandMarks(self.journal, cmd.command_id),
                        cancel=token,
                    )
                    log.info("command %s: %s", cmd.command_id, "stopped" if report.ok else report.reason)
                    return ResultEvent(**base, stop=report, cancelled=token.cancelled)
                case CommandKind.START_OBSERVER:
                    start = cmd.start_args()
                    token = self._token(cmd.command_id, marks)
                    started = await starting.start(
                        self._host(start.target.host),
                        start.target,
                        start.options,
                        progress=progress,
                        journal=CommandMarks(self.journal, cmd.command_id),
                        cancel=token,
                    )
                    log.info("command %s: %s", cmd.command_id, "started" if started.ok else started.reason)
                    return ResultEvent(**base, start=started, cancelled=token.cancelled)
                case CommandKind.CANCEL_COMMAND:
                    return ResultEvent(**base, cancel=await self._cancel(cmd.cancel_args().command_id))
                case CommandKind.WATCH_OBSERVERS:
                    self.watcher.watch(cmd.command_id, cmd.watch_args())
                    return ResultEvent(**base)
        except (ExecutorError, KeyError, ValidationError, OSError, ValueError) as exc:  # OSError: no pidfd
            log.warning("command %s failed: %s", cmd.command_id, exc)
            return ResultEvent(**base, error=str(exc))
        except Exception as exc:  # one command never ends the daemon: its failure is its answer
            log.error("command %s failed unexpectedly: %r", cmd.command_id, exc)
            return ResultEvent(**base, error=f"internal error: {type(exc).__name__}: {exc}")
        finally:
            self._tokens.pop(cmd.command_id, None)

    def _token(self, command_id: str, marks: tuple[str, ...]) -> CancelToken:
        """The command's cancel token; cancelled already if the journal says so (a cancel came first,
        or before a restart)."""
        token = CancelToken(cancelled=CANCEL_MARK in marks)
        self._tokens[command_id] = token
        return token

    async def _cancel(self, target_id: str) -> CancelReport:
        """Journal the cancel of a command, then stop it waiting; it never signals or launches after."""
        entry = await self.journal.entry(target_id)
        if entry is not None and entry.result is not None:
            return CancelReport(
                command_id=target_id,
                found=True,
                finished=True,
                signals=await self._signals(target_id),
                detail="it had already ended; nothing to cancel",
            )
        token = self._tokens.get(target_id)

        async def journal() -> None:
            await self.journal.mark(target_id, CANCEL_MARK)

        if token is not None:
            await token.cancel(journal)  # waits for a signal in progress, then none ever again
        else:
            await journal()  # the command may still arrive: it will find the cancel first
        task = self._inflight.get(target_id)
        if task is not None:
            task.cancel()
            await asyncio.wait([task], timeout=10)
        signals = await self._signals(target_id)
        detail = (
            f"cancelled after {' then '.join(signals)}; no signal after the cancel"
            if signals
            else "cancelled before any signal"
            if entry is not None
            else "not received yet: cancelled before it runs"
        )
        if entry is not None:
            result = ResultEvent(agent_id=self.id, command_id=target_id, cancelled=True, error=detail)
            await self.journal.finish(target_id, result.model_dump(mode="json"))
        log.info("command %s: %s", target_id, detail)
        return CancelReport(command_id=target_id, found=entry is not None, signals=signals, detail=detail)

    async def _signals(self, command_id: str) -> list[str]:
        return [m.split(":", 1)[0] for m in await self.journal.marks(command_id) if m.startswith("SIG")]

    def _host(self, name: str) -> Host:
        if name not in self.hosts:
            raise KeyError(f"agent {self.id} does not serve host {name!r} (it serves {sorted(self.hosts)})")
        return self.hosts[name]

    async def _reject(self, cmd: Command | None, reason: str) -> None:
        """cmd: the authenticated command refused, or None when the payload could not be authenticated."""
        if cmd is None:
            cause = reason.split(":")[0]
            self.session.throttle.warn(
                f"reject:{cause}", "rejected command ? (not authenticated): %s", reason
            )
            await self._publish(RejectedEvent(agent_id=self.id, command_id=None, reason=reason))
            return
        log.warning("rejected command %s: %s", cmd.command_id, reason)
        event = RejectedEvent(
            agent_id=self.id, command_id=cmd.command_id, reason=reason, issued_at=cmd.issued_at
        )
        await self._publish(event, cmd)

    def _digest(self, cmd: Command) -> str:
        """cmd.digest(), computed once per command object: each of a command's events names it."""
        hit = self._digests.get(cmd.command_id)
        if hit is not None and hit[0] is cmd:
            return hit[1]
        if len(self._digests) >= 1024:
            self._digests.clear()  # bounded: ids are the sender's to choose
        digest = self._digests[cmd.command_id] = (cmd, cmd.digest())
        return digest[1]

    async def _publish(self, event: AnyEvent, cmd: Command | None = None) -> None:
        """The one way out for events: each names this agent and, when it answers a command, that command's
        id and digest, and is signed with this agent's key. Best effort, without waiting for the broker's
        acknowledgement: a result is in the journal, and the controller re-sends until it has one."""
        update: dict[str, Any] = {"agent_id": self.id}
        if cmd is not None:
            update |= {"command_id": cmd.command_id, "command_digest": self._digest(cmd)}
        signed = sign(event.model_copy(update=update), self.signing_key)
        await self.session.post(self.events_topic, signed.model_dump_json())


TASK_IN_ID = re.compile(r"-t(\d+)-s(\d+)-r\d+")  # command ids carry the task, subtask and run


def _first_error(exc: ValidationError) -> str:
    """The first error, bounded and printable: its location may be any key a sender chose."""
    err = exc.errors()[0]
    text = f"{'.'.join(str(x) for x in err['loc']) or 'payload'}: {err['msg']}"
    return "".join(c if c.isprintable() else "?" for c in text[:200])


async def serve(config: AgentConfig) -> None:
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    await Agent(config).run(stopping)
