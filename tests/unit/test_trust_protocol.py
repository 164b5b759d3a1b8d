"""Events are signed by their agent and bound to the command they answer; parsing untrusted bytes never
raises anything but a validation error; topics live under a deployment's prefix; command ids are
unguessable but stable."""

from __future__ import annotations

import os
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from obstop.agent import signing
from obstop.agent.errors import ConfigError
from obstop.agent.protocol import (
    CommandKind,
    ObserverTarget,
    ProgressEvent,
    RejectedEvent,
    ResultEvent,
    StopArgs,
    commands_topic,
    events_topic,
    new_command,
    parse_event,
    parse_topic,
    utcnow,
)
from obstop.controller.steps.run import StepRun


def command(agent: str = "h1", command_id: str = "obstop-x-t1-s2-r0-abc", home: str = "/home/ob") -> Any:
    target = ObserverTarget(host=agent, ip="127.0.0.11", home_path=home)
    return new_command(agent, CommandKind.STOP_OBSERVER, StopArgs(target=target), command_id=command_id)


def test_generate_writes_an_agents_pair_private_0600(tmp_path: Path) -> None:
    private, public = signing.generate(tmp_path, agent="h1")
    assert (private.name, public.name) == ("h1.key", "h1.pub")
    assert private.stat().st_mode & 0o777 == 0o600
    signing.load_public(public)
    with pytest.raises(ConfigError, match="refusing to overwrite"):
        signing.generate(tmp_path, agent="h1")
    with pytest.raises(ConfigError, match="not an agent id"):
        signing.generate(tmp_path, agent="../h2")


def test_an_agent_makes_its_key_once(tmp_path: Path) -> None:
    key, public, made = signing.load_or_create(tmp_path / "state" / "h1.key")
    assert made and public == tmp_path / "state" / "h1.pub"
    assert (tmp_path / "state" / "h1.key").stat().st_mode & 0o777 == 0o600
    again, _, made_again = signing.load_or_create(tmp_path / "state" / "h1.key")
    assert not made_again and again.public_key() == key.public_key()


def test_event_signature_covers_every_field(tmp_path: Path) -> None:
    signing.generate(tmp_path, agent="h1")
    key = signing.load_private(tmp_path / "h1.key")
    keys = signing.AgentKeys(tmp_path)
    cmd = command()
    event = signing.sign(
        ResultEvent(agent_id="h1", command_id=cmd.command_id, command_digest=cmd.digest(), error="x"), key
    )
    wire = parse_event(event.model_dump_json())  # as the controller reads it
    assert keys.verify(wire, "h1") is None
    for change in (
        {"agent_id": "h2"},
        {"command_id": "obstop-x-t1-s3-r0-abc"},
        {"command_digest": command(command_id="other-id-123").digest()},
        {"error": None},
        {"replayed": True},
        {"at": wire.at + timedelta(seconds=1)},
    ):
        assert keys.verify(wire.model_copy(update=change), "h1") is not None, change
    assert "unsigned" in str(keys.verify(wire.model_copy(update={"signature": None}), "h1"))
    assert "no usable public key for agent h2" in str(keys.verify(wire, "h2"))


def test_a_rotated_key_is_read_again_without_a_restart(tmp_path: Path) -> None:
    signing.generate(tmp_path / "old", agent="h1")
    signing.generate(tmp_path / "new", agent="h1")
    (tmp_path / "keys").mkdir()
    os.replace(tmp_path / "old" / "h1.pub", tmp_path / "keys" / "h1.pub")
    keys = signing.AgentKeys(tmp_path / "keys", recheck=0.0)
    event = signing.sign(
        ProgressEvent(agent_id="h1", command_id="c1234567", message="m"),
        signing.load_private(tmp_path / "new" / "h1.key"),
    )
    assert keys.verify(event, "h1") is not None  # signed by the new key: the controller has the old one
    os.replace(tmp_path / "new" / "h1.pub", tmp_path / "keys" / "h1.pub")  # the operator rotates it
    assert keys.verify(event, "h1") is None


def test_a_failed_signature_reads_the_key_again_at_most_every_recheck(tmp_path: Path) -> None:
    signing.generate(tmp_path, agent="h1")
    keys = signing.AgentKeys(tmp_path, recheck=3600)
    forged = ProgressEvent(agent_id="h1", command_id="c1234567", message="m", signature="AAAA")
    assert keys.verify(forged, "h1") is not None
    (tmp_path / "h1.pub").unlink()  # not read again within the hour, however many forgeries come
    for _ in range(100):
        assert "bad signature" in str(keys.verify(forged, "h1"))


def test_a_digest_is_the_commands_meaning_not_its_timestamps() -> None:
    cmd = command()
    resent = cmd.model_copy(update={"issued_at": utcnow() + timedelta(seconds=5)})
    assert resent.digest() == cmd.digest()
    assert command(command_id="obstop-x-t1-s2-r1-abc").digest() != cmd.digest()
    assert command(agent="h2").digest() != cmd.digest()
    assert command(home="/home/other").digest() != cmd.digest()


@pytest.mark.parametrize(
    "payload",
    [
        b"[" * 1000,
        b"[" * 100_000,
        b'{"kind": "result", "agent_id": "h1", "command_id": "x", "stop": ' + b"{" * 5000,
        b"\xff\xfe\x00garbage",
        b"",
        b'{"kind": "result", "agent_id": "h1", "command_id": "x", "error": 1e999999}',
        b'{"kind": "progress", "agent_id": "h1\\n", "command_id": "x", "message": "m"}',
        b'{"kind": "progress", "agent_id": "h1", "command_id": "' + b"x" * 200 + b'", "message": "m"}',
    ],
)
def test_untrusted_bytes_raise_only_validation_errors(payload: bytes) -> None:
    with pytest.raises(ValueError):
        parse_event(payload)


def test_topics_live_under_the_prefix() -> None:
    assert commands_topic("h1", "fleet-a") == "fleet-a/v1/agents/h1/commands"
    assert parse_topic(events_topic("h1", "a/b"), "a/b") == ("h1", "events")
    for topic in ("obstop/v1/agents/h1/events", "a/b/v1/agents/../events", "a/b/v1/agents/h1/x/events"):
        assert parse_topic(topic, "a/b") is None


def test_rejections_of_unauthenticated_commands_name_no_id() -> None:
    assert RejectedEvent(agent_id="h1", command_id=None, reason="unsigned command").command_id is None


def run(secret: bytes, subtask: int = 2, run_time: int = 0) -> StepRun:
    return StepRun(
        subtask_id=subtask,
        task_id=1,
        node="n",
        step="s",
        run_time=run_time,
        operation="EXECUTE",
        context={},
        cluster_id=1,
        task_context={},
        deadline=time.monotonic(),
        command_prefix="obstop-store1",
        command_secret=secret,
        servers={},
        zones={},
        sink=None,  # type: ignore[arg-type]
    )


def test_command_ids_are_unguessable_and_stable() -> None:
    a, b = os.urandom(32), os.urandom(32)
    assert run(a).command_id == run(a).command_id  # a restarted controller re-sends the same id
    assert run(a).command_id != run(b).command_id  # another store's secret: another id
    # the id of another subtask cannot be computed from one's own without the secret
    mine, theirs = run(a, subtask=2).command_id, run(a, subtask=3).command_id
    assert theirs != mine.replace("-s2-", "-s3-")
    assert run(a, run_time=1).command_id != mine  # a retry is a new id
    assert len(mine) <= 128
