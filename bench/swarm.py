"""A simulated agent swarm: one process that answers the agent protocol for many agent ids.

It subscribes to every agent's commands topic, checks each command's signature (as a real agent does),
waits a configurable per-command delay, and answers with accepted and result events, signed (as a real
agent signs them) with one key that stands for every agent's, journalling ids so a re-sent command gets
the same answer. It stops no process: it exists to load the controller.

    python -m bench.swarm --broker mqtt://127.0.0.1:1883 --public-key keys/command-signing.pub \
        --agent-key keys/swarm.key --delay 0.05
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from pathlib import Path

import aiomqtt

from obstop.agent.protocol import (
    DEFAULT_TOPIC_PREFIX,
    AcceptedEvent,
    Command,
    CommandKind,
    ObserverState,
    Presence,
    ProbeReport,
    ResultEvent,
    StopReport,
    agents_root,
    events_topic,
)
from obstop.agent.signing import Rejected, load_private, load_public, sign, verify


def _result(cmd: Command) -> ResultEvent:
    base = {"agent_id": cmd.agent_id, "command_id": cmd.command_id, "command_digest": cmd.digest()}
    if cmd.kind is not CommandKind.STOP_OBSERVER and cmd.kind is not CommandKind.PROBE_OBSERVER:
        return ResultEvent(**base)  # a start or a cancel: acknowledged, nothing simulated
    if cmd.kind is CommandKind.PROBE_OBSERVER:
        t = cmd.probe_args().target
        return ResultEvent(
            **base,
            probe=ProbeReport(
                host=t.host,
                home_path=t.home_path,
                state=ObserverState.RUNNING,
                pid=4242,
                ports_held=[t.sql_port, t.rpc_port],
            ),
        )
    t = cmd.stop_args().target
    probe = ProbeReport(host=t.host, home_path=t.home_path, state=ObserverState.RUNNING, pid=4242)
    return ResultEvent(
        **base,
        stop=StopReport(
            host=t.host,
            home_path=t.home_path,
            ok=True,
            pid=4242,
            signals=["SIGTERM"],
            time_to_exit_s=0.001,
            time_to_ports_free_s=0.002,
            pid_file_removed=True,
            probe=probe,
        ),
    )


async def run(
    broker: str,
    public_key: Path,
    agent_key: Path,
    delay: float,
    hosts: int,
    verify_signatures: bool,
    prefix: str = DEFAULT_TOPIC_PREFIX,
) -> None:
    from obstop.agent.mqtt_session import parse_url

    addr = parse_url(broker)
    key = load_public(public_key)
    signer = load_private(agent_key)
    root = agents_root(prefix)
    answered: dict[str, str] = {}
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    async with aiomqtt.Client(
        addr.host, addr.port, identifier="obstop-bench-swarm", max_queued_outgoing_messages=0
    ) as c:
        await c.subscribe(f"{root}/+/commands", qos=1)
        for i in range(1, hosts + 1):
            await c.publish(f"{root}/h{i}/presence", Presence.ONLINE.value, qos=1, retain=True)
        limit = asyncio.Semaphore(256)

        async def answer(payload: bytes) -> None:
            cmd = Command.model_validate_json(payload)
            if verify_signatures:
                try:
                    verify(cmd, key, cmd.agent_id)
                except Rejected:
                    return
            if cmd.kind is CommandKind.WATCH_OBSERVERS:
                return  # news only, as a real agent takes it: no answer (the swarm reports no state)
            async with limit:
                topic = events_topic(cmd.agent_id, prefix)
                if cmd.command_id not in answered:
                    accepted = AcceptedEvent(
                        agent_id=cmd.agent_id, command_id=cmd.command_id, command_digest=cmd.digest()
                    )
                    await c.publish(topic, sign(accepted, signer).model_dump_json(), qos=1)
                    await asyncio.sleep(delay)
                    answered[cmd.command_id] = sign(_result(cmd), signer).model_dump_json()
                await c.publish(topic, answered[cmd.command_id], qos=1)

        async with asyncio.TaskGroup() as tg:

            async def read() -> None:
                async for m in c.messages:
                    payload = m.payload if isinstance(m.payload, bytes) else str(m.payload).encode()
                    tg.create_task(answer(payload))

            reader = tg.create_task(read())
            await stopping.wait()
            reader.cancel()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--broker", required=True)
    p.add_argument("--public-key", type=Path, required=True)
    p.add_argument("--agent-key", type=Path, required=True, help="signs every agent's events")
    p.add_argument("--topic-prefix", default=DEFAULT_TOPIC_PREFIX)
    p.add_argument("--delay", type=float, default=0.05, help="seconds each command takes")
    p.add_argument("--hosts", type=int, default=0, help="publish presence online for h1..hN")
    p.add_argument(
        "--no-verify", action="store_true", help="skip signature checks (measure the controller only)"
    )
    a = p.parse_args()
    # it publishes thousands at once on purpose: aiomqtt's "N pending publish calls" warnings are noise here
    logging.getLogger("mqtt").setLevel(logging.ERROR)
    asyncio.run(run(a.broker, a.public_key, a.agent_key, a.delay, a.hosts, not a.no_verify, a.topic_prefix))


if __name__ == "__main__":
    main()
