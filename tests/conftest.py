from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from obstop.agent.executors.host import Host
from obstop.agent.executors.local import LocalHost
from obstop.agent.executors.ssh_config import SSHHostConfig
from obstop.fakes.install import FakeObserver, start
from tests.support import Sshd, fresh_ip, kill_tree_under, start_sshd


@pytest.fixture(scope="session")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sshd]:
    yield from start_sshd(tmp_path_factory.mktemp("sshd"))


class Fakes:
    """Starts fake observers under a test's temp dir; everything left is killed at teardown."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.count = 0

    def home(self) -> Path:
        self.count += 1
        return self.root / f"ob{self.count}"

    def start(
        self, *misbehave: str, home: Path | None = None, ip: str | None = None
    ) -> tuple[FakeObserver, int]:
        fake = FakeObserver(home or self.home(), ip or fresh_ip(), misbehave=list(misbehave))
        return fake, start(fake)


@pytest.fixture
def fakes(tmp_path: Path) -> Iterator[Fakes]:
    f = Fakes(tmp_path)
    try:
        yield f
    finally:
        kill_tree_under(tmp_path)


@pytest.fixture(params=["local", "ssh"])
async def host(request: pytest.FixtureRequest) -> AsyncIterator[Host]:
    if request.param == "local":
        yield LocalHost("local")
        return
    sshd: Sshd = request.getfixturevalue("sshd")
    h = SSHHostConfig(
        host="ssh",
        address="127.0.0.1",
        user=sshd.user,
        identity=sshd.identity,
        known_hosts=sshd.known_hosts,
        port=sshd.port,
    ).open()
    try:
        yield h
    finally:
        await h.close()
