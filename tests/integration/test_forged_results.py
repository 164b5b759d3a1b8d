"""Forged results, rejections and progress for another agent are never accepted.

h1's agent is down (its retained presence says offline) and its observer runs. An attacker reads the
command ids from the subtask logs (as any TASK_VIEWER can) and answers every command sent to h1 with
forged events naming the right digest: accepted, progress, a rejection, and a result saying the observer
is stopped. Two attackers: a rogue client on an anonymous broker writing to h1's own topic (signed with a
key of its own, or unsigned), and a compromised agent h2 on a broker with deploy/'s ACLs, holding h2's
MQTT credentials and h2's own signing key. Zero forged events are accepted: the step fails with "agent h1
offline", the observer still runs, and the controller logs the refusals once per cause.
"""

from __future__ import annotations

import asyncio
import logging
import re
import subprocess
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from obstop.agent import signing
from obstop.agent.protocol import (
    AcceptedEvent,
    AnyEvent,
    CommandKind,
    ObserverState,
    ObserverTarget,
    Presence,
    ProbeArgs,
    ProbeReport,
    ProgressEvent,
    RejectedEvent,
    ResultEvent,
    StopReport,
    events_topic,
    new_command,
    presence_topic,
)
from tests.support.controller import Env, running, write_config
from tests.support.fakes import Cluster, Fakes, start_cluster
from tests.support.mosquitto import Mosquitto
from tests.support.processes import alive

pytestmark = pytest.mark.mqtt
ACL = Path(__file__).resolve().parents[2] / "deploy" / "mosquitto" / "obstop.acl"
USERS = ("h1", "h2", "obstop-controller")


@dataclass
class Attack:
    """Who forges: which topic it writes to, which agent it claims to be, which key it signs with."""

    broker: Mosquitto
    credentials: tuple[str, str] | None
    topics: list[str]  # agents whose events topics it writes to
    claims: str
    key: Any  # Ed25519PrivateKey or None: unsigned


@pytest.fixture(params=["rogue-client", "h2-credentials"])
def attack(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Attack]:
    keys = tmp_path / "keys"
    signing.generate(keys)
    for agent in ("h1", "h2"):
        signing.generate(keys / "private", agent=agent)
        (keys / "agents").mkdir(exist_ok=True)
        (keys / "agents" / f"{agent}.pub").write_bytes((keys / "private" / f"{agent}.pub").read_bytes())
    if request.param == "rogue-client":
        broker = Mosquitto(tmp_path / "mosquitto").start()
        signing.generate(tmp_path / "rogue", agent="h1")
        forger = signing.load_private(tmp_path / "rogue" / "h1.key")
        yield Attack(broker, None, ["h1"], "h1", forger)
    else:
        passwd = tmp_path / "passwd"
        for user in USERS:
            flags = ["-b", "-c"] if not passwd.exists() else ["-b"]
            subprocess.run(["mosquitto_passwd", *flags, str(passwd), user, f"{user}-pw"], check=True)
        broker = Mosquitto(
            tmp_path / "secured", anonymous=False, extra=f"password_file {passwd}\nacl_file {ACL}\n"
        ).start()
        h2_key = signing.load_private(keys / "private" / "h2.key")
        yield Attack(broker, ("h2", "h2-pw"), ["h2", "h1"], "h2", h2_key)
    broker.stop()


def client(broker: Mosquitto, credentials: tuple[str, str] | None, name: str) -> aiomqtt.Client:
    user, password = credentials or (None, None)
    return aiomqtt.Client("127.0.0.1", broker.port, identifier=name, username=user, password=password)


@pytest.fixture
async def setup(tmp_path: Path, fakes: Fakes, attack: Attack) -> AsyncIterator[tuple[Env, Cluster]]:
    cluster = start_cluster(fakes, zones=1, per_zone=1)
    secured = attack.credentials is not None
    (tmp_path / "controller-mqtt.pw").write_text("obstop-controller-pw\n")
    mqtt: dict[str, Any] = {"url": attack.broker.url}
    if secured:
        mqtt |= {"username": "obstop-controller", "password_file": "controller-mqtt.pw"}
    config = write_config(
        tmp_path,
        cluster,
        f"sqlite:///{tmp_path}/c.db",
        agentless={"local_hosts": []},
        mqtt=mqtt,
        signing={"private_key": "keys/command-signing.key", "agent_keys_dir": "keys/agents"},
        stop={"subtask_timeout": 4, "resend_interval": 0.3},
    )
    # h1's agent is down: its last will said so
    h1 = ("h1", "h1-pw") if secured else None
    async with client(attack.broker, h1, "h1-will") as c:
        await c.publish(presence_topic("h1"), Presence.OFFLINE.value, qos=1, retain=True)
    async with running(config) as e:
        yield e, cluster


def forgeries(attack: Attack, command_id: str, target: ObserverTarget) -> list[AnyEvent]:
    # the attacker even knows the digest: the command's arguments come from the inventory
    digest = new_command("h1", CommandKind.PROBE_OBSERVER, ProbeArgs(target=target), command_id=command_id)
    base: dict[str, Any] = {
        "agent_id": attack.claims,
        "command_id": command_id,
        "command_digest": digest.digest(),
    }
    probe = ProbeReport(host="h1", home_path=target.home_path, state=ObserverState.RUNNING, pid=1)
    stopped = StopReport(host="h1", home_path=target.home_path, ok=True, signals=["SIGTERM"], probe=probe)
    events: list[AnyEvent] = [
        AcceptedEvent(**base),
        ProgressEvent(**base, message="FORGED progress \x1b[31m\nline"),
        ResultEvent(**base, probe=probe, stop=stopped),
        RejectedEvent(**base, reason="FORGED rejection"),
    ]
    signed = [signing.sign(e, attack.key) for e in events]
    # a rogue client also tries without any signature; a compromised agent signs with its own key
    return signed + (events if attack.credentials is None else [])


async def forge_while_running(env: Env, attack: Attack, task_id: int, target: ObserverTarget) -> int:
    """Answer every command id that shows in the task's logs with forged events; returns how many sent."""
    seen: set[str] = set()
    published = 0
    async with client(attack.broker, attack.credentials, "attacker") as c:
        while (await env.get(f"/api/v2/tasks/instances/{task_id}"))["status"] == "RUNNING":
            logs = await env.log_of(task_id, "Prepare stop observer") + await env.log_of(
                task_id, "Stop observer process"
            )
            seen |= set(re.findall(r"command (obstop-[A-Za-z0-9_.:-]+)", logs))
            for command_id in seen:  # again and again: a flood must not flood the log
                for event in forgeries(attack, command_id, target):
                    for agent in attack.topics:
                        await c.publish(events_topic(agent), event.model_dump_json(), qos=1)
                        published += 1
            await asyncio.sleep(0.05)  # polling the API, as a TASK_VIEWER would
    assert seen, "the attacker never saw a command id"
    return published


async def test_forged_events_for_another_agent_are_never_accepted(
    setup: tuple[Env, Cluster], attack: Attack, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="obstop.mqtt")
    env, cluster = setup
    fake = cluster.fakes[0]
    target = ObserverTarget(host="h1", ip=fake.ip, home_path=str(fake.home))
    r = await env.stop(body={"freeze": False})
    task_id = r.json()["data"]["id"]

    published = await forge_while_running(env, attack, task_id, target)

    assert await env.wait(task_id) == "FAILED"
    prepare = await env.log_of(task_id, "Prepare stop observer")
    assert "agent h1 offline since" in prepare, prepare
    every_log = prepare + await env.log_of(task_id, "Stop observer process")
    assert "FORGED" not in every_log and "rejected command" not in every_log
    assert "accepted command" not in every_log
    assert alive(cluster.pids[0])
    c = await env.get("/api/v2/ob/clusters/1")
    assert "PROCESS_STOPPED" not in {s["status"] for z in c["zones"] for s in z["servers"]}
    refusals = [r.getMessage() for r in caplog.records if "refused an event" in r.getMessage()]
    assert refusals, "the refusals are logged"
    # once per cause per minute, not once per forgery (at most: signature, misrouted, digest, unreadable)
    assert len(refusals) <= 4 < published, (len(refusals), published, refusals)
