"""SSH failures are clear, distinct, and signal nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from obstop.agent import procedure
from obstop.agent.errors import HostKeyMismatch, HostUnreachable, LoginRefused
from obstop.agent.executors.ssh import SSHHost
from obstop.agent.executors.ssh_config import SSHHostConfig
from obstop.agent.protocol import ObserverTarget
from tests.conftest import Fakes
from tests.support import Sshd, alive, free_port


def ssh_host(sshd: Sshd, **changes: object) -> SSHHost:
    fields: dict[str, object] = dict(
        address="127.0.0.1",
        user=sshd.user,
        identity=str(sshd.identity),
        known_hosts=str(sshd.known_hosts),
        port=sshd.port,
        connect_timeout=3,
    )
    fields.update(changes)
    return SSHHostConfig.model_validate({"host": "h", **fields}).open()


@pytest.mark.parametrize(
    ("changes", "error", "words"),
    [
        ({"port": 0}, HostUnreachable, "cannot reach"),
        ({"known_hosts": "wrong"}, HostKeyMismatch, "host key"),
        ({"identity": "bad"}, LoginRefused, "refused"),
    ],
    ids=["unreachable", "wrong-host-key", "login-refused"],
)
async def test_ssh_failure_is_distinct_and_signals_nothing(
    sshd: Sshd, fakes: Fakes, changes: dict[str, object], error: type[Exception], words: str
) -> None:
    fake, pid = fakes.start()
    resolved = {
        "port": free_port() if "port" in changes else sshd.port,
        "known_hosts": str(sshd.wrong_known_hosts) if "known_hosts" in changes else str(sshd.known_hosts),
        "identity": str(sshd.bad_identity) if "identity" in changes else str(sshd.identity),
    }
    host = ssh_host(sshd, **resolved)
    t = ObserverTarget(host="h", ip=fake.ip, home_path=str(fake.home))
    with pytest.raises(error, match=words):
        await procedure.stop(host, t)
    await host.close()
    assert alive(pid)


async def test_connection_is_reused(sshd: Sshd, fakes: Fakes, tmp_path: Path) -> None:
    host = ssh_host(sshd)
    fake, _ = fakes.start()
    t = ObserverTarget(host="h", ip=fake.ip, home_path=str(fake.home))
    await procedure.probe(host, t)
    first = host._conn
    await procedure.stop(host, t)
    assert host._conn is first
    await host.close()
