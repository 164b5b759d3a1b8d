"""The one MQTT session both daemons use: connect (jittered backoff), subscribe, read, publish.

While connected, one TaskGroup owns the session's named loops: the reader of `client.messages` and any
loop its owner adds (the agent's watchdog). The reader hands each message to the owner's `on_message`
under a guard: an oversized payload is dropped before anyone parses it, and whatever one message's
handling raises is logged, never the end of the daemon. A lost connection ends the group; the session
reconnects and subscribes again (persistent session: QoS 1 messages wait at the broker meanwhile). With
several broker URLs (the nodes of a cluster), a lost or refused connection moves on to the next one, in
turn; the owner's `on_connect` runs on every connection (the agent announces its presence there).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import ssl
import threading
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import aiomqtt

log = logging.getLogger("obstop.mqtt")

MAX_PAYLOAD = 64 * 1024  # commands and events are well under 4 KB
OnMessage = Callable[[str, bytes], None]
ClientHook = Callable[[aiomqtt.Client], Coroutine[Any, Any, None]]


@dataclass(frozen=True)
class BrokerAddress:
    host: str
    port: int
    tls: bool


def parse_url(url: str) -> BrokerAddress:
    u = urlparse(url)
    if u.scheme not in ("mqtt", "mqtts", "tcp", "ssl") or not u.hostname:
        raise ValueError(f"expected mqtt://HOST:PORT or mqtts://HOST:PORT, not {url!r}")
    tls = u.scheme in ("mqtts", "ssl")
    return BrokerAddress(u.hostname, u.port or (8883 if tls else 1883), tls)


def client_id(prefix: str, role: str, name: str) -> str:
    """A client id unique per deployment: two deployments on one broker never take each other's session
    (a broker drops the older connection of a repeated id, and both would reconnect forever)."""
    return f"{prefix}-{role}-{name}"


def read_secret(path: Path | None) -> str | None:
    return None if path is None else path.read_text().strip()


@dataclass(frozen=True)
class Broker:
    """Where and as whom a daemon connects: `url`, then `more` (the other nodes of a cluster), in turn."""

    url: str
    username: str | None = None
    password_file: Path | None = None
    ca_file: Path | None = None
    more: tuple[str, ...] = ()

    @classmethod
    def of(
        cls, urls: Sequence[str], username: str | None, password_file: Path | None, ca_file: Path | None
    ) -> Broker:
        return cls(urls[0], username, password_file, ca_file, tuple(urls[1:]))

    @property
    def urls(self) -> tuple[str, ...]:
        return (self.url, *self.more)

    def client(
        self, identifier: str, will: aiomqtt.Will | None = None, keepalive: int = 15, url: str | None = None
    ) -> aiomqtt.Client:
        """A client on a persistent session (clean_session=False): QoS 1 messages wait while we reconnect."""
        addr = parse_url(url or self.url)
        tls = (
            ssl.create_default_context(cafile=str(self.ca_file) if self.ca_file else None)
            if addr.tls
            else None
        )
        return aiomqtt.Client(
            addr.host,
            addr.port,
            identifier=identifier,
            username=self.username,
            password=read_secret(self.password_file),
            clean_session=False,
            will=will,
            keepalive=keepalive,
            tls_context=tls,
            protocol=aiomqtt.ProtocolVersion.V311,
            timeout=10,
        )


def _paho(client: aiomqtt.Client | None) -> Any:
    """The paho client under aiomqtt's (aiomqtt 2 keeps it as `_client`), or None."""
    return getattr(client, "_client", None)


def write_at_once(client: aiomqtt.Client) -> None:
    """Each packet paho queues, aiomqtt writes from a writer callback it registers through
    call_soon_threadsafe: three turns of the event loop (a wake-up, the registration, the write) and
    five system calls per publish. On the loop's own thread, outside paho's callbacks (where paho itself
    never writes at once), the packet is written at once instead, as paho does without an event loop;
    only what the socket does not take waits for the writer. Anything unexpected: aiomqtt's own way."""
    paho = _paho(client)
    busy = getattr(paho, "_in_callback_mutex", None)
    register = getattr(paho, "on_socket_register_write", None)
    if paho is None or busy is None or register is None:
        return
    thread = threading.get_ident()

    def on_register_write(c: Any, userdata: Any, sock: Any) -> None:
        if threading.get_ident() == thread and not busy.locked():
            c.loop_write()  # writes what the socket takes; no writer is left registered when all went out
            if not c.want_write():
                return
        register(c, userdata, sock)

    paho.on_socket_register_write = on_register_write


class Backoff:
    """Full-jitter exponential backoff (as aiomqtt's docs and AWS's advice have it)."""

    def __init__(self, base: float = 0.2, cap: float = 10.0) -> None:
        self.base, self.cap, self.attempt = base, cap, 0

    def reset(self) -> None:
        self.attempt = 0

    async def wait(self, stopping: asyncio.Event) -> None:
        delay = random.uniform(0, min(self.cap, self.base * 2**self.attempt))
        self.attempt += 1
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay):
                await stopping.wait()


class _Throttle:
    """At most one log line per cause per interval (a flood of bad messages must not flood the log)."""

    def __init__(self, interval: float = 60.0) -> None:
        self.interval = interval
        self._last: dict[str, float] = {}
        self._dropped: dict[str, int] = {}

    def due(self, cause: str) -> bool:
        """Whether a warning for cause would be logged now (work only for a log line can be skipped)."""
        return time.monotonic() - self._last.get(cause, -self.interval) >= self.interval

    def warn(self, cause: str, message: str, *args: object) -> None:
        now = time.monotonic()
        if now - self._last.get(cause, -self.interval) >= self.interval:
            dropped = self._dropped.pop(cause, 0)
            suffix = f" ({dropped} more like it since the last report)" if dropped else ""
            log.warning(message + suffix, *args)
            self._last[cause] = now
        else:
            self._dropped[cause] = self._dropped.get(cause, 0) + 1


class Session:
    def __init__(
        self,
        broker: Broker,
        *,
        client_id: str,
        subscriptions: Sequence[str],
        on_message: OnMessage,
        will: aiomqtt.Will | None = None,
        on_connect: ClientHook | None = None,
        on_close: ClientHook | None = None,
        loops: Sequence[tuple[str, ClientHook]] = (),
        max_payload: int = MAX_PAYLOAD,
        max_publishing: int = 64,
    ) -> None:
        self.broker = broker
        self.client_id = client_id
        self.subscriptions = list(subscriptions)
        self.on_message = on_message
        self.will = will
        self.on_connect = on_connect
        self.on_close = on_close
        self.loops = list(loops)
        self.max_payload = max_payload
        self.connected = asyncio.Event()
        self.throttle = _Throttle()
        self._client: aiomqtt.Client | None = None
        self._publishing = asyncio.Semaphore(max_publishing)

    async def run(self, stopping: asyncio.Event) -> None:
        """Keep the session up until stopping is set; a clean close runs `on_close` first."""
        backoff = Backoff()
        urls = self.broker.urls
        at = 0
        while not stopping.is_set():
            url = urls[at]
            try:
                async with self.broker.client(self.client_id, self.will, url=url) as client:
                    write_at_once(client)
                    for topic in self.subscriptions:
                        await client.subscribe(topic, qos=1)
                    self._client = client
                    self.connected.set()
                    backoff.reset()
                    log.info("connected to MQTT broker %s as %s", url, self.client_id)
                    if self.on_connect is not None:
                        await self.on_connect(client)
                    await self._serve(client, stopping)
                    if self.on_close is not None:
                        await self.on_close(client)
            except* aiomqtt.MqttError as group:
                reason = "; ".join(str(e) for e in group.exceptions)
                at = (at + 1) % len(urls)  # a cluster's node went away: the next one
                log.warning(
                    "MQTT connection to %s lost or refused: %s; reconnecting to %s", url, reason, urls[at]
                )
            finally:
                self._client = None
                self.connected.clear()
            if not stopping.is_set():
                await backoff.wait(stopping)

    async def _serve(self, client: aiomqtt.Client, stopping: asyncio.Event) -> None:
        async with asyncio.TaskGroup() as tg:
            tasks = [tg.create_task(self._read(client), name="mqtt-reader")]
            tasks += [tg.create_task(loop(client), name=name) for name, loop in self.loops]
            await stopping.wait()
            for t in tasks:
                t.cancel()

    async def _read(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            topic = message.topic.value
            raw = message.payload
            payload = raw if isinstance(raw, bytes) else str(raw).encode() if raw is not None else b""
            if len(payload) > self.max_payload:
                self.throttle.warn(
                    f"size:{topic}",
                    "dropped a %d-byte message on %s (limit %d)",
                    len(payload),
                    topic,
                    self.max_payload,
                )
                continue
            try:
                self.on_message(topic, payload)
            except Exception as exc:  # one message can never end the daemon
                self.throttle.warn(f"error:{topic}", "a message on %s could not be handled: %r", topic, exc)

    async def post(self, topic: str, payload: str | bytes) -> bool:
        """A QoS 1 message handed to the client without waiting for the broker's acknowledgement (paho
        sends it in order and keeps it until acknowledged): for best-effort news, whose loss costs a
        re-send of what asked for it (an agent's events: its results are journalled). False if not
        connected."""
        paho = _paho(self._client)
        if paho is None:
            return await self.publish(topic, payload)
        info = paho.publish(topic, payload, qos=1)
        if info.rc != 0:
            log.warning("publish to %s failed: %s", topic, aiomqtt.MqttCodeError(info.rc))
            return False
        return True

    async def publish(
        self, topic: str, payload: str | bytes, *, qos: int = 1, retain: bool = False, timeout: float = 10
    ) -> bool:
        """Publish while connected; False (and a log line) if not connected or the publish failed."""
        client = self._client
        if client is None:
            return False
        async with self._publishing:
            try:
                await client.publish(topic, payload, qos=qos, retain=retain, timeout=timeout)
                return True
            except aiomqtt.MqttError as exc:
                log.warning("publish to %s failed: %s", topic, exc)
                return False
