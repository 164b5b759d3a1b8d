"""Fixtures every tier may use, and the markers that follow from them.

A test that uses the `sshd` fixture (or the ssh `host`) is marked `ssh`; one that uses a Mosquitto
(`mosquitto`, `broker`, `fleets`) is marked `mqtt`; the postgres `store_url` is marked `postgres`. So
`pytest -m "not ssh"` runs where there is no sshd, without anyone remembering to mark the tests.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from obstop.agent.executors.host import Host
from obstop.agent.executors.local import LocalHost
from obstop.agent.executors.ssh_config import SSHHostConfig
from tests.support.controller import database
from tests.support.fakes import Fakes
from tests.support.fleet import Fleets
from tests.support.mosquitto import Mosquitto
from tests.support.processes import kill_tree_under
from tests.support.sshd import Sshd, start_sshd

# a fixture a test uses (directly or through another fixture) -> the marker it gets
MARK_BY_FIXTURE = {"sshd": "ssh", "mosquitto": "mqtt"}
# a parameter value of a fixture -> the marker it gets
MARK_BY_PARAM = {("host", "ssh"): "ssh", ("store_url", "postgres"): "postgres"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        marks = {mark for fixture, mark in MARK_BY_FIXTURE.items() if fixture in names}
        params = getattr(getattr(item, "callspec", None), "params", {})
        marks |= {mark for (name, value), mark in MARK_BY_PARAM.items() if params.get(name) == value}
        for mark in sorted(marks - {m.name for m in item.iter_markers()}):
            item.add_marker(mark)


@pytest.fixture(scope="session")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sshd]:
    yield from start_sshd(tmp_path_factory.mktemp("sshd"))


@pytest.fixture
def fakes(tmp_path: Path) -> Iterator[Fakes]:
    f = Fakes(tmp_path)
    try:
        yield f
    finally:
        kill_tree_under(tmp_path)


@pytest.fixture(params=["local", "ssh"])
async def host(request: pytest.FixtureRequest) -> AsyncIterator[Host]:
    """This machine, through the local executor and through SSH to the test sshd."""
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


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Callable[..., Mosquitto]]:
    """Start Mosquittos with their own configs: mosquitto(name, extra=..., anonymous=...)."""
    started: list[Mosquitto] = []

    def make(name: str = "mosquitto", extra: str = "", anonymous: bool = True) -> Mosquitto:
        m = Mosquitto(tmp_path / name, extra=extra, anonymous=anonymous).start()
        started.append(m)
        return m

    yield make
    for m in started:
        m.stop()


@pytest.fixture
def broker(mosquitto: Callable[..., Mosquitto]) -> Mosquitto:
    """An open Mosquitto (anonymous clients allowed) for this test alone."""
    return mosquitto()


@pytest.fixture
def fleets(tmp_path: Path, broker: Mosquitto) -> Iterator[Fleets]:
    f = Fleets(tmp_path, broker.url)
    try:
        yield f
    finally:
        f.down()


@pytest.fixture(params=["sqlite", "postgres"])
async def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """The controller's store: a SQLite file, then a PostgreSQL database made for the test."""
    async with database(request.param, tmp_path) as url:
        yield url
