"""MQTT plumbing shared by agent and controller: URLs, client construction, jittered reconnects."""

from __future__ import annotations

import asyncio
import random
import ssl
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import aiomqtt


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


def read_secret(path: Path | None) -> str | None:
    return None if path is None else path.read_text().strip()


def client(
    url: str,
    *,
    identifier: str,
    username: str | None,
    password: str | None,
    ca_file: Path | None = None,
    will: aiomqtt.Will | None = None,
    keepalive: int = 15,
) -> aiomqtt.Client:
    """A client on a persistent session (clean_session=False): QoS 1 messages wait while we reconnect."""
    addr = parse_url(url)
    tls = None
    if addr.tls:
        tls = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    return aiomqtt.Client(
        addr.host,
        addr.port,
        identifier=identifier,
        username=username,
        password=password,
        clean_session=False,
        will=will,
        keepalive=keepalive,
        tls_context=tls,
        protocol=aiomqtt.ProtocolVersion.V311,
        timeout=10,
    )


class Backoff:
    """Full-jitter exponential backoff (as aiomqtt's docs and AWS's advice have it)."""

    def __init__(self, base: float = 0.2, cap: float = 10.0) -> None:
        self.base, self.cap, self.attempt = base, cap, 0

    def reset(self) -> None:
        self.attempt = 0

    async def wait(self, stopping: asyncio.Event) -> None:
        delay = random.uniform(0, min(self.cap, self.base * 2**self.attempt))
        self.attempt += 1
        try:
            async with asyncio.timeout(delay):
                await stopping.wait()
        except TimeoutError:
            pass
