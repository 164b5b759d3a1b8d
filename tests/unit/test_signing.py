"""Commands signed by the controller's key: the round trip, and every way a command is refused."""

from __future__ import annotations

import json
import stat
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from obstop.agent import signing
from obstop.agent.errors import ConfigError
from obstop.agent.protocol import (
    Command,
    CommandKind,
    ObserverTarget,
    StopArgs,
    StopOptions,
    new_command,
    utcnow,
)
from obstop.agent.signing import Rejected, sign, verify

KEY = Ed25519PrivateKey.generate()
PUBLIC = KEY.public_key()


def command(agent_id: str = "h1", ttl: float = 60, **options: object) -> Command:
    target = ObserverTarget(host="h1", ip="10.0.0.5", home_path="/home/admin/oceanbase")
    args = StopArgs(target=target, options=StopOptions.model_validate(options))
    return new_command(agent_id, CommandKind.STOP_OBSERVER, args, ttl=ttl)


def test_a_signed_command_verifies_after_the_wire() -> None:
    signed = sign(command(), KEY)
    received = Command.model_validate_json(signed.model_dump_json())
    verify(received, PUBLIC, "h1")


def tampered(field: str, value: object) -> Command:
    raw = json.loads(sign(command(), KEY).model_dump_json())
    raw[field] = value
    return Command.model_validate(raw)


@pytest.mark.parametrize(
    ("cmd", "reason"),
    [
        (command(), "unsigned command"),
        (sign(command(), Ed25519PrivateKey.generate()), "bad signature"),
        (sign(command(), KEY).model_copy(update={"signature": "not base64!"}), "bad signature"),
        (tampered("agent_id", "h2"), "bad signature"),  # the address is signed too
        (tampered("expires_at", (utcnow() + timedelta(days=365)).isoformat()), "bad signature"),
        (
            tampered("args", {**command().args, "options": StopOptions(signal="SIGKILL").model_dump()}),
            "bad signature",
        ),
        (sign(command(agent_id="h2"), KEY), "addressed to agent h2, not to h1"),
        (sign(command(ttl=-1), KEY), "expired at"),
    ],
    ids=[
        "unsigned",
        "other-key",
        "garbage",
        "readdressed",
        "extended",
        "altered-args",
        "misaddressed",
        "expired",
    ],
)
def test_refused_with_its_reason(cmd: Command, reason: str) -> None:
    with pytest.raises(Rejected, match=reason):
        verify(cmd, PUBLIC, "h1")


def test_clock_skew_is_tolerated_up_to_its_bound() -> None:
    signed = sign(command(ttl=3600), KEY)
    verify(signed, PUBLIC, "h1", skew=30, now=signed.issued_at - timedelta(seconds=29))
    with pytest.raises(Rejected, match="issued in the future"):
        verify(signed, PUBLIC, "h1", skew=30, now=signed.issued_at - timedelta(seconds=31))
    with pytest.raises(Rejected, match="expired"):
        verify(signed, PUBLIC, "h1", now=signed.expires_at)


@pytest.mark.parametrize("off", [timedelta(minutes=10), timedelta(minutes=-10)], ids=["ahead", "behind"])
def test_a_command_refused_for_its_time_names_the_agents_clock(off: timedelta) -> None:
    """An agent whose clock is minutes off says what its clock reads (R6 of the fault trials: the
    controller's log of the failed step must show the skew, not only that a command expired)."""
    signed = sign(command(), KEY)
    now = signed.issued_at + off
    with pytest.raises(Rejected) as refused:
        verify(signed, PUBLIC, "h1", now=now)
    assert f"this agent's clock, which reads {now.isoformat()}" in str(refused.value)
    assert "clocks" in str(refused.value)


def test_a_re_signed_command_means_the_same_and_another_ask_does_not() -> None:
    first = sign(command(), KEY)
    again = sign(
        first.model_copy(
            update={"signature": None, "issued_at": utcnow(), "expires_at": utcnow() + timedelta(hours=1)}
        ),
        KEY,
    )
    assert again.signature != first.signature and again.meaning() == first.meaning()
    altered = first.model_copy(update={"args": command(term_timeout=1.0).args})
    assert altered.meaning() != first.meaning()


def test_generated_keys(tmp_path: Path) -> None:
    private, public = signing.generate(tmp_path / "keys")
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    cmd = sign(command(), signing.load_private(private))
    verify(cmd, signing.load_public(public), "h1")
    with pytest.raises(ConfigError, match="refusing to overwrite"):
        signing.generate(tmp_path / "keys")
    with pytest.raises(ConfigError, match=f"cannot load public key {private}"):
        signing.load_public(private)
    with pytest.raises(ConfigError, match="cannot load signing key"):
        signing.load_private(tmp_path / "missing.key")
