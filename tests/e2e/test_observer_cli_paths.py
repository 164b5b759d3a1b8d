"""`obstop observer probe|stop` on a mistyped home path is an error (exit 1), never "STOPPED"; and after a
stop without --ip, the port check watches the addresses the observer itself listened on, so another
process on the same port at another address does not fail a stop that succeeded."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from obstop.fakes.install import install
from tests.support.fakes import Fakes, fresh_ip
from tests.support.processes import alive, wait_port


def obstop(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "300", "NO_COLOR": "1"}
    return subprocess.run(
        [sys.executable, "-m", "obstop", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )


@pytest.mark.parametrize("command", ["probe", "stop"])
def test_a_home_path_that_does_not_exist_is_an_error(tmp_path: Path, command: str) -> None:
    res = obstop("observer", command, "--home-path", str(tmp_path / "oceanbsae"))
    assert res.returncode == 1, res
    assert "STOPPED" not in res.stdout and "already stopped" not in res.stdout
    assert "does not exist" in res.stdout and res.stdout.count("\n") == 1


@pytest.mark.parametrize("command", ["probe", "stop"])
def test_a_home_path_without_bin_observer_is_an_error(tmp_path: Path, command: str) -> None:
    (tmp_path / "home" / "run").mkdir(parents=True)
    res = obstop("observer", command, "--home-path", str(tmp_path / "home"))
    assert res.returncode == 1 and "bin/observer does not exist" in res.stdout, res


def test_an_installed_but_stopped_observer_is_still_stopped(tmp_path: Path) -> None:
    install(tmp_path / "home")
    res = obstop("observer", "probe", "--home-path", str(tmp_path / "home"), "--ip", fresh_ip())
    assert res.returncode == 0 and res.stdout.startswith("STOPPED"), res


@pytest.fixture
def neighbour() -> Iterator[str]:
    """Another process listening on 2881 at another loopback address."""
    ip = fresh_ip()
    code = f"import socket,time; s=socket.socket(); s.bind(({ip!r}, 2881)); s.listen(); time.sleep(300)"
    proc = subprocess.Popen([sys.executable, "-c", code])
    try:
        wait_port(ip, 2881)
        yield ip
    finally:
        proc.kill()
        proc.wait()


def test_stop_without_ip_watches_the_observers_own_addresses(fakes: Fakes, neighbour: str) -> None:
    fake, pid = fakes.start()
    res = obstop("observer", "stop", "--home-path", str(fake.home), "--port-timeout", "3")
    assert res.returncode == 0, res
    assert res.stdout.startswith(f"stopped pid {pid}")
    assert not alive(pid)


def test_stop_with_a_wildcard_ip_still_waits_for_the_observers_ports(fakes: Fakes) -> None:
    fake, _pid = fakes.start("--linger-child", "30")  # a child keeps the observer's ports
    res = obstop("observer", "stop", "--home-path", str(fake.home), "--port-timeout", "0.5")
    assert res.returncode == 1 and "still held by pid" in res.stdout, res
