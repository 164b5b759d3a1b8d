"""Ed25519 signatures over a command's canonical JSON (the `cryptography` package)."""

from __future__ import annotations

import base64
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from obstop.agent.errors import ConfigError
from obstop.agent.protocol import Command

PRIVATE_NAME = "command-signing.key"
PUBLIC_NAME = "command-signing.pub"


def generate(directory: Path) -> tuple[Path, Path]:
    """Write a new key pair: the private key readable by its owner only."""
    directory.mkdir(parents=True, exist_ok=True)
    key = Ed25519PrivateKey.generate()
    private, public = directory / PRIVATE_NAME, directory / PUBLIC_NAME
    if private.exists():
        raise ConfigError(f"{private} exists already; refusing to overwrite a signing key")
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    fd = os.open(private, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return private, public


def load_private(path: Path) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot load signing key {path}: {exc}") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(f"{path} is not an Ed25519 private key")
    return key


def load_public(path: Path) -> Ed25519PublicKey:
    try:
        key = serialization.load_pem_public_key(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot load public key {path}: {exc}") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise ConfigError(f"{path} is not an Ed25519 public key")
    return key


def sign(command: Command, key: Ed25519PrivateKey) -> Command:
    signature = base64.b64encode(key.sign(command.signing_payload())).decode()
    return command.model_copy(update={"signature": signature})


class Rejected(Exception):
    """Why a command is refused; the agent logs it and publishes a REJECTED event."""


def verify(
    command: Command, key: Ed25519PublicKey, agent_id: str, *, skew: float = 30.0, now: datetime | None = None
) -> None:
    """Raise Rejected unless the command is signed by key, addressed to agent_id, and unexpired."""
    if not command.signature:
        raise Rejected("unsigned command")
    try:
        key.verify(base64.b64decode(command.signature, validate=True), command.signing_payload())
    except (InvalidSignature, ValueError) as exc:
        raise Rejected("bad signature: not signed by the controller's key") from exc
    if command.agent_id != agent_id:
        raise Rejected(f"addressed to agent {command.agent_id}, not to {agent_id}")
    t = now or datetime.now(UTC)
    if command.expires_at <= t:
        raise Rejected(f"expired at {command.expires_at.isoformat()}")
    if command.issued_at > t + timedelta(seconds=skew):
        raise Rejected(f"issued in the future ({command.issued_at.isoformat()}); check the clocks")
