"""Both daemons in the README's shell: the ops client's exports (`OBSTOP_URL`, `OBSTOP_USER`,
`OBSTOP_PASSWORD_FILE`) and the agent's `OBSTOP_AGENT_CONFIG` are set. Neither daemon takes them for config
keys (before, both refused to start: "Extra inputs are not permitted"); both serve, and the client finds
the controller through the same exports."""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import aiomqtt
import pytest
import tomli_w

from obstop.agent import signing
from obstop.agent.protocol import Presence, presence_topic
from obstop.fakes.net import free_port
from tests.support.cli import obstop
from tests.support.controller import USERS, write_config
from tests.support.controller_process import ControllerProcess
from tests.support.fakes import Cluster, Fakes
from tests.support.mosquitto import Mosquitto
from tests.support.processes import alive, obstop_argv


async def retained_presence(broker: Mosquitto, agent_id: str, timeout: float = 20) -> str:
    """The agent's retained presence, waiting (bounded) until it says online."""
    async with aiomqtt.Client("127.0.0.1", broker.port, identifier="test-presence") as c:
        await c.subscribe(presence_topic(agent_id), qos=1)
        async with asyncio.timeout(timeout):
            async for m in c.messages:
                state = bytes(m.payload).decode() if not isinstance(m.payload, str) else m.payload
                if state == Presence.ONLINE.value:
                    return state
    raise AssertionError(f"agent {agent_id} never said online")


@pytest.fixture
def agent_process(tmp_path: Path) -> Iterator[Callable[[dict[str, str]], subprocess.Popen[bytes]]]:
    procs: list[subprocess.Popen[bytes]] = []

    def start(env: dict[str, str]) -> subprocess.Popen[bytes]:
        with open(tmp_path / "agent.log", "ab") as log:
            procs.append(subprocess.Popen(obstop_argv("agent"), stdout=log, stderr=log, env=env))
        return procs[-1]

    yield start
    for p in procs:
        p.terminate()
        p.wait(30)


def test_daemons_start_and_serve_with_the_readmes_exports(
    tmp_path: Path,
    fakes: Fakes,
    broker: Mosquitto,
    controllers: Callable[..., ControllerProcess],
    agent_process: Callable[[dict[str, str]], subprocess.Popen[bytes]],
) -> None:
    signing.generate(tmp_path / "keys")
    signing.generate(tmp_path / "keys" / "agents", agent="h1")  # h1's own key; the controller knows its .pub
    cluster = Cluster()
    fake, pid = fakes.start()
    cluster.add(fake, pid, "zone1")
    port = free_port()
    config = write_config(
        tmp_path,
        cluster,
        "sqlite:///state/controller.db",
        api={"listen": f"127.0.0.1:{port}"},
        mqtt={"url": broker.url},
        signing={"private_key": f"keys/{signing.PRIVATE_NAME}", "agent_keys_dir": "keys/agents"},
        agentless={"local_hosts": []},  # h1 is served by its agent
    )
    agent_config = tmp_path / "agent.toml"
    agent_config.write_text(
        tomli_w.dumps(
            {
                "agent_id": "h1",
                "state_dir": "agent-state",
                "controller_public_key": f"keys/{signing.PUBLIC_NAME}",
                "private_key": "keys/agents/h1.key",
                "mqtt": {"url": broker.url},
            }
        )
    )
    password = tmp_path / "admin.password"
    password.write_text(USERS["admin"][0] + "\n")
    # the README's exports, the agent's variable, and one more OBSTOP_* that no config declares
    env = {
        **os.environ,
        "OBSTOP_URL": f"http://127.0.0.1:{port}",
        "OBSTOP_USER": "admin",
        "OBSTOP_PASSWORD_FILE": str(password),
        "OBSTOP_AGENT_CONFIG": str(agent_config),
        "OBSTOP_NOT_A_KEY": "1",
    }

    agent = agent_process(env)
    ctl = controllers(config, env=env)
    ctl.start()  # returns once GET /api/status answers 200

    assert ctl.http.get("/api/status").json()["data"]["status"] == "UP"
    assert asyncio.run(retained_presence(broker, "h1")) == "online", (tmp_path / "agent.log").read_text()
    assert agent.poll() is None
    assert (tmp_path / "agent-state").is_dir()  # the agent read agent.toml, relative paths and all

    stop = obstop("stop", "1", "--watch", env=env)  # the ops client finds the API by the same exports
    assert stop.returncode == 0, stop.stdout + stop.stderr
    assert "SUCCESSFUL" in stop.stdout
    assert not alive(pid)
