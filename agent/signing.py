"""Ed25519 signatures (the `cryptography` package): the controller signs commands with its key, and each
agent signs its events with its own.

Keys are PEM files: private keys PKCS8 and readable by their owner only (0600), public keys
SubjectPublicKeyInfo. `obstop keys generate DIR` writes the controller's pair (command-signing.key/.pub),
`--agent ID` an agent's (ID.key/ID.pub); an agent without a key makes its own at first start. The
controller finds agent ID's public key at `[signing] agent_keys_dir`/ID.pub and reads it again when it is
missing or a signature fails (at most every few seconds), so rotating a key is replacing its file.
"""

from __future__ import annotations

import base64
import os
import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol, TypeVar

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import BaseModel

from obstop.agent.errors import ConfigError
from obstop.agent.protocol import Command, valid_agent_id

PRIVATE_NAME = "command-signing.key"
PUBLIC_NAME = "command-signing.pub"


def _one_line(exc: Exception) -> str:
    return " ".join(str(exc).split())[:300]


def _write_pair(key: Ed25519PrivateKey, private: Path, public: Path) -> None:
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    fd = os.open(private, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    write_public(key, public)


def write_public(key: Ed25519PrivateKey, public: Path) -> None:
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )


def generate(directory: Path, agent: str | None = None) -> tuple[Path, Path]:
    """Write a new key pair, the private key readable by its owner only: the controller's command-signing
    pair, or with `agent` that agent's pair (ID.key, ID.pub). Never overwrites a private key."""
    if agent is not None and not valid_agent_id(agent):
        raise ConfigError(f"{agent!r} is not an agent id (letters, digits, '_', '.', '-')")
    directory.mkdir(parents=True, exist_ok=True)
    names = (f"{agent}.key", f"{agent}.pub") if agent else (PRIVATE_NAME, PUBLIC_NAME)
    private, public = directory / names[0], directory / names[1]
    if private.exists():
        raise ConfigError(f"{private} exists already; refusing to overwrite a signing key")
    _write_pair(Ed25519PrivateKey.generate(), private, public)
    return private, public


def load_or_create(private: Path) -> tuple[Ed25519PrivateKey, Path, bool]:
    """An agent's key: loaded, or made at first start (0600). Returns (key, its .pub file, made now)."""
    public = private.with_suffix(".pub")
    if private.exists():
        key = load_private(private)
        if not public.exists():
            write_public(key, public)
        return key, public, False
    private.parent.mkdir(parents=True, exist_ok=True)
    key = Ed25519PrivateKey.generate()
    try:
        _write_pair(key, private, public)
    except OSError as exc:
        raise ConfigError(f"cannot write a new agent key to {private}: {_one_line(exc)}") from exc
    return key, public, True


def load_private(path: Path) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise ConfigError(f"cannot load signing key {path}: {_one_line(exc)}") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(f"{path} is not an Ed25519 private key")
    return key


def load_public(path: Path) -> Ed25519PublicKey:
    try:
        key = serialization.load_pem_public_key(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot load public key {path}: {_one_line(exc)}") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise ConfigError(f"{path} is not an Ed25519 public key")
    return key


class Signable(Protocol):
    @property
    def signature(self) -> str | None: ...

    def signing_payload(self) -> bytes: ...


S = TypeVar("S", bound=BaseModel)


def sign(message: S, key: Ed25519PrivateKey) -> S:
    """A copy of a command or an event with its signature over everything else."""
    unsigned = message.model_copy(update={"signature": None})
    payload: bytes = unsigned.signing_payload()  # type: ignore[attr-defined]
    signature = base64.b64encode(key.sign(payload)).decode()
    return unsigned.model_copy(update={"signature": signature})


def signature_valid(message: Signable, key: Ed25519PublicKey) -> bool:
    if not message.signature:
        return False
    try:
        key.verify(base64.b64decode(message.signature, validate=True), message.signing_payload())
    except (InvalidSignature, ValueError):
        return False
    return True


class Rejected(Exception):
    """Why a command is refused; the agent logs it and publishes a REJECTED event. `authenticated`: the
    command's signature verified, so its id (and digest) may be named in the rejection."""

    def __init__(self, reason: str, *, authenticated: bool = False) -> None:
        super().__init__(reason)
        self.authenticated = authenticated


def verify(
    command: Command, key: Ed25519PublicKey, agent_id: str, *, skew: float = 30.0, now: datetime | None = None
) -> None:
    """Raise Rejected unless the command is signed by key, addressed to agent_id, and unexpired."""
    if not command.signature:
        raise Rejected("unsigned command")
    if not signature_valid(command, key):
        raise Rejected("bad signature: not signed by the controller's key")
    if command.agent_id != agent_id:
        raise Rejected(f"addressed to agent {command.agent_id}, not to {agent_id}", authenticated=True)
    t = now or datetime.now(UTC)
    # both say this agent's time: a clock minutes off shows in the reason the controller logs
    if command.expires_at <= t:
        raise Rejected(
            f"expired at {command.expires_at.isoformat()} by this agent's clock, which reads {t.isoformat()} "
            f"(issued at {command.issued_at.isoformat()}): delivered late, or the clocks differ",
            authenticated=True,
        )
    if command.issued_at > t + timedelta(seconds=skew):
        raise Rejected(
            f"issued in the future ({command.issued_at.isoformat()}) by this agent's clock, which reads "
            f"{t.isoformat()}: check the clocks",
            authenticated=True,
        )


@dataclass(frozen=True)
class _Known:
    key: Ed25519PublicKey | None
    error: str | None
    read_at: float


class AgentKeys:
    """The agents' public keys: `directory`/ID.pub, read when first needed and again when missing or when
    a signature fails, at most every `recheck` seconds per agent (a forger cannot make us read files in a
    loop). Keys found are kept (one per real agent); ids without a key are remembered too, but only the
    last `max_unknown` of them (topics can name any id)."""

    def __init__(self, directory: Path, recheck: float = 5.0, max_unknown: int = 4096) -> None:
        self.directory = directory
        self.recheck = recheck
        self.max_unknown = max_unknown
        self._known: dict[str, _Known] = {}
        self._unknown: OrderedDict[str, _Known] = OrderedDict()

    def path(self, agent_id: str) -> Path:
        return self.directory / f"{agent_id}.pub"

    def check(self) -> int:
        """Refuse a directory that is missing or holds a .pub that does not parse; returns how many."""
        if not self.directory.is_dir():
            raise ConfigError(f"{self.directory} is not a directory")
        try:
            files = sorted(self.directory.glob("*.pub"))
        except OSError as exc:
            raise ConfigError(f"cannot read {self.directory}: {_one_line(exc)}") from exc
        for f in files:
            load_public(f)
        return len(files)

    def _read(self, agent_id: str) -> _Known:
        now = time.monotonic()
        if not valid_agent_id(agent_id):
            found = _Known(None, f"{agent_id!r} is not an agent id", now)
        else:
            try:
                found = _Known(load_public(self.path(agent_id)), None, now)
            except ConfigError as exc:
                found = _Known(None, str(exc), now)
        self._known.pop(agent_id, None)
        self._unknown.pop(agent_id, None)
        if found.key is not None:
            self._known[agent_id] = found
        else:
            self._unknown[agent_id] = found
            while len(self._unknown) > self.max_unknown:
                self._unknown.popitem(last=False)
        return found

    def _get(self, agent_id: str, stale: bool) -> _Known:
        known = self._known.get(agent_id) or self._unknown.get(agent_id)
        if known is None:
            return self._read(agent_id)
        if (stale or known.key is None) and time.monotonic() - known.read_at >= self.recheck:
            return self._read(agent_id)
        return known

    def verify(self, message: Signable, agent_id: str) -> str | None:
        """None when message is signed by agent_id's key, else why not (one line)."""
        known = self._get(agent_id, stale=False)
        if known.key is not None and signature_valid(message, known.key):
            return None
        again = self._get(agent_id, stale=True)  # rotated since we read it?
        if again is not known and again.key is not None and signature_valid(message, again.key):
            return None
        if again.key is None:
            return f"no usable public key for agent {agent_id}: {again.error}"
        if not message.signature:
            return "unsigned"
        return f"bad signature: not signed by the key in {self.path(agent_id)}"
