"""SSH failures are clear, distinct, and signal nothing."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from obstop.agent import procedure
from obstop.agent.errors import HostKeyMismatch, HostUnreachable, LoginRefused
from obstop.agent.executors.ssh import SSHHost
from obstop.agent.executors.ssh_config import SSHHostConfig
from obstop.agent.protocol import ObserverTarget
from obstop.fakes.net import free_port
from tests.support.fakes import Fakes
from tests.support.processes import alive
from tests.support.sshd import Sshd


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


# each case: what differs from a good login, given the test sshd
Changes = Callable[[Sshd], dict[str, object]]


@pytest.mark.parametrize(
    ("changes", "error", "words"),
    [
        (lambda sshd: {"port": free_port()}, HostUnreachable, "cannot reach"),
        (lambda sshd: {"known_hosts": str(sshd.wrong_known_hosts)}, HostKeyMismatch, "host key"),
        (lambda sshd: {"identity": str(sshd.bad_identity)}, LoginRefused, "refused"),
    ],
    ids=["unreachable", "wrong-host-key", "login-refused"],
)
async def test_ssh_failure_is_distinct_and_signals_nothing(
    sshd: Sshd, fakes: Fakes, changes: Changes, error: type[Exception], words: str
) -> None:
    fake, pid = fakes.start()
    host = ssh_host(sshd, **changes(sshd))
    t = ObserverTarget(host="h", ip=fake.ip, home_path=str(fake.home))
    with pytest.raises(error, match=words):
        await procedure.stop(host, t)
    await host.close()
    assert alive(pid)


async def test_one_connection_serves_every_step(sshd: Sshd, fakes: Fakes) -> None:
    """A probe then a whole stop (facts, signal, waits, ports, pid file) log in to sshd once."""
    fake, pid = fakes.start()
    t = ObserverTarget(host="h", ip=fake.ip, home_path=str(fake.home))
    before = sshd.logins()
    host = ssh_host(sshd)
    try:
        assert (await procedure.probe(host, t)).pid == pid
        report = await procedure.stop(host, t)
        assert report.ok, report.reason
        assert sshd.logins() - before == 1, sshd.log.read_text()[-2000:]
    finally:
        await host.close()
