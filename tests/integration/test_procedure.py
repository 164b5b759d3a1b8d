"""The stop procedure against real fake observers, through both executors (local and a real sshd)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from obstop.agent import procedure
from obstop.agent.executors.host import Host
from obstop.agent.protocol import ObserverState, ObserverTarget, StopOptions
from obstop.fakes.install import FakeObserver, install
from tests.support.fakes import Fakes, fresh_ip
from tests.support.processes import alive, wait_dead, wait_port

FAST = StopOptions(term_timeout=0.5, kill_timeout=5, port_timeout=5)


def target(fake: FakeObserver, host: Host) -> ObserverTarget:
    return ObserverTarget(host=host.name, ip=fake.ip, home_path=str(fake.home))


def ports_free(fake: FakeObserver) -> bool:
    for port in (fake.sql_port, fake.rpc_port):
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((fake.ip, port))
            except OSError:
                return False
    return True


async def test_stops_observer_and_frees_ports(host: Host, fakes: Fakes) -> None:
    fake, pid = fakes.start()
    probe = await procedure.probe(host, target(fake, host))
    assert probe.state is ObserverState.RUNNING
    assert probe.pid == pid and probe.ports_held == [2881, 2882]

    report = await procedure.stop(host, target(fake, host), FAST)

    assert report.ok, report.reason
    assert report.signals == ["SIGTERM"] and report.pid == pid and not report.already_stopped
    assert not alive(pid) and ports_free(fake)
    assert report.pid_file_removed and not fake.pid_file.exists()
    assert report.time_to_exit_s is not None and report.time_to_ports_free_s is not None


async def test_already_stopped_is_reported(host: Host, fakes: Fakes) -> None:
    fake, _ = fakes.start()
    first = await procedure.stop(host, target(fake, host), FAST)
    assert first.ok and not first.already_stopped

    again = await procedure.stop(host, target(fake, host), FAST)

    assert again.ok and again.already_stopped and again.signals == []
    assert (await procedure.probe(host, target(fake, host))).state is ObserverState.STOPPED


async def test_stale_pid_file_is_noted_and_removed(host: Host, fakes: Fakes) -> None:
    fake, pid = fakes.start()
    os.kill(pid, 9)  # dies like a crashed observer: the pid file stays
    wait_dead(pid)
    probe = await procedure.probe(host, target(fake, host))
    assert probe.state is ObserverState.STOPPED and probe.stale_pid_file

    report = await procedure.stop(host, target(fake, host), FAST)

    assert report.ok and report.already_stopped and report.pid_file_removed
    assert not fake.pid_file.exists()


async def test_observer_run_by_relative_path_is_proved(host: Host, tmp_path: Path, fakes: Fakes) -> None:
    home = tmp_path / "rel"
    install(home)
    ip = fresh_ip()
    subprocess.run(["./bin/observer", "--daemonize", "--ip", ip], cwd=home, check=True, timeout=20)
    fake = FakeObserver(home, ip)

    report = await procedure.stop(host, target(fake, host), FAST)

    assert report.ok, report.reason
    assert report.signals == ["SIGTERM"]


async def test_ignored_sigterm_escalates_to_sigkill(host: Host, fakes: Fakes) -> None:
    fake, pid = fakes.start("--ignore-sigterm")

    report = await procedure.stop(host, target(fake, host), StopOptions(term_timeout=0.3, kill_timeout=5))

    assert report.ok, report.reason
    assert report.signals == ["SIGTERM", "SIGKILL"]
    assert not alive(pid) and ports_free(fake)


async def test_an_observer_that_cannot_be_proved_while_it_exits_counts_as_exited(
    host: Host, fakes: Fakes
) -> None:
    # on SIGTERM it leaves its home, then exits after 0.8 s: at the escalation (0.3 s) its cwd says it is
    # not the observer any more; the procedure waits a moment instead of failing, and sends no SIGKILL
    fake, pid = fakes.start("--leave-home-on-term", "--exit-delay", "0.8")

    report = await procedure.stop(host, target(fake, host), StopOptions(term_timeout=0.3, kill_timeout=5))

    assert report.ok, report.reason
    assert report.signals == ["SIGTERM"]
    assert not alive(pid) and ports_free(fake)


async def test_an_unprovable_process_that_lives_on_is_never_killed(host: Host, fakes: Fakes) -> None:
    fake, pid = fakes.start("--leave-home-on-term", "--ignore-sigterm")

    report = await procedure.stop(host, target(fake, host), StopOptions(term_timeout=0.3, kill_timeout=5))

    assert not report.ok and report.reason and "not escalating to SIGKILL" in report.reason
    assert report.signals == ["SIGTERM"] and alive(pid)


async def test_slow_exit_is_waited_for(host: Host, fakes: Fakes) -> None:
    fake, pid = fakes.start("--exit-delay", "0.4")

    report = await procedure.stop(host, target(fake, host), StopOptions(term_timeout=5))

    assert report.ok and report.signals == ["SIGTERM"]
    assert report.time_to_exit_s is not None and report.time_to_exit_s >= 0.4
    assert not alive(pid)


async def test_port_held_by_child_is_waited_for(host: Host, fakes: Fakes) -> None:
    fake, _pid = fakes.start("--linger-child", "0.6")

    report = await procedure.stop(host, target(fake, host), FAST)

    assert report.ok, report.reason
    assert report.time_to_ports_free_s is not None and report.time_to_ports_free_s >= 0.5
    assert ports_free(fake)


async def test_port_still_held_fails_with_the_holder(host: Host, fakes: Fakes) -> None:
    fake, _ = fakes.start("--linger-child", "30")

    report = await procedure.stop(host, target(fake, host), StopOptions(port_timeout=0.3))

    assert not report.ok
    assert report.reason and "still held by pid" in report.reason and "port 2881" in report.reason


# --- never signal the wrong process -------------------------------------------------------------


@pytest.fixture
def bystander(tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(["sleep", "300"], cwd=tmp_path)
    yield proc
    proc.kill()
    proc.wait()


def write_pid_file(home: Path, content: str) -> None:
    install(home)
    (home / "run" / "observer.pid").write_text(content)


async def assert_refused(host: Host, home: Path, ip: str, reason_part: str) -> None:
    t = ObserverTarget(host=host.name, ip=ip, home_path=str(home))
    probe = await procedure.probe(host, t)
    assert probe.state is ObserverState.REFUSED and probe.reason and reason_part in probe.reason
    report = await procedure.stop(host, t, FAST)
    assert not report.ok and report.signals == []
    assert report.reason and reason_part in report.reason


async def test_pid_file_naming_unrelated_process(
    host: Host, tmp_path: Path, bystander: subprocess.Popen[bytes]
) -> None:
    home = tmp_path / "ob"
    write_pid_file(home, f"{bystander.pid}\n")
    await assert_refused(host, home, fresh_ip(), "is not the observer")
    assert alive(bystander.pid)


async def test_pid_file_naming_another_deployments_observer(host: Host, fakes: Fakes) -> None:
    _other, other_pid = fakes.start()
    mine = fakes.home()
    write_pid_file(mine, f"{other_pid}\n")
    await assert_refused(host, mine, fresh_ip(), "is not the observer")
    assert alive(other_pid)


async def test_right_cwd_wrong_executable(host: Host, tmp_path: Path) -> None:
    home = tmp_path / "ob"
    install(home)
    # a Python process in HOME, but its script is not HOME/bin/observer
    impostor = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"], cwd=home)
    try:
        write_pid_file(home, f"{impostor.pid}\n")
        await assert_refused(host, home, fresh_ip(), "is not the observer")
        assert alive(impostor.pid)
    finally:
        impostor.kill()
        impostor.wait()


async def test_right_binary_in_the_wrong_cwd(host: Host, tmp_path: Path) -> None:
    home = tmp_path / "ob"
    install(home)
    # runs HOME/bin/observer, but in another folder: cwd is wrong
    other = tmp_path / "elsewhere"
    other.mkdir()
    ip = fresh_ip()
    proc = subprocess.Popen([str(home / "bin" / "observer"), "--ip", ip], cwd=other)
    try:
        wait_port(ip, 2882)
        write_pid_file(home, f"{proc.pid}\n")
        await assert_refused(host, home, fresh_ip(), "cwd is")
        assert alive(proc.pid)
    finally:
        proc.kill()
        proc.wait()


# the fourth rule: the process holds the lock on the pid file, or listens on the configured ports

OTHER_PORTS = (3881, 3882)


def unlock_pid_file(fake: FakeObserver) -> None:
    """Replace the pid file by a copy: same pid, new inode, which the observer does not lock."""
    copy = fake.pid_file.with_name("observer.pid.new")
    copy.write_text(fake.pid_file.read_text())
    os.replace(copy, fake.pid_file)


def signalled(fake: FakeObserver) -> bool:
    return "received SIGTERM" in (fake.home / "log" / "observer.log").read_text()


async def test_neither_lock_nor_configured_ports_is_refused(host: Host, fakes: Fakes) -> None:
    # HOME/bin/observer with cwd HOME, listening elsewhere than configured, and the pid file is not its lock
    fake, pid = fakes.start(ports=OTHER_PORTS)
    unlock_pid_file(fake)

    await assert_refused(host, fake.home, fake.ip, f"pid {pid} neither holds the lock on")
    report = await procedure.stop(host, target(fake, host), FAST)
    assert report.reason and f"nor listens on {fake.ip}:2881/2882" in report.reason
    assert alive(pid) and not signalled(fake)


async def test_lock_held_without_the_configured_ports_is_accepted(host: Host, fakes: Fakes) -> None:
    fake, pid = fakes.start(ports=OTHER_PORTS)
    probe = await procedure.probe(host, target(fake, host))
    assert probe.state is ObserverState.RUNNING and probe.pid == pid and probe.ports_held == []

    report = await procedure.stop(host, target(fake, host), FAST)

    assert report.ok and report.signals == ["SIGTERM"], report.reason
    assert not alive(pid) and signalled(fake)


async def test_configured_ports_without_the_lock_are_accepted(host: Host, fakes: Fakes) -> None:
    fake, pid = fakes.start()
    unlock_pid_file(fake)
    probe = await procedure.probe(host, target(fake, host))
    assert probe.state is ObserverState.RUNNING and probe.pid == pid and probe.ports_held == [2881, 2882]

    report = await procedure.stop(host, target(fake, host), FAST)

    assert report.ok and report.signals == ["SIGTERM"], report.reason
    assert not alive(pid) and signalled(fake) and ports_free(fake)


@pytest.mark.parametrize("content", ["", "garbage\n", "-1\n", "0\n", "99999999999999999999\n", "12 13\n"])
async def test_malformed_pid_file(host: Host, tmp_path: Path, content: str) -> None:
    home = tmp_path / "ob"
    write_pid_file(home, content)
    await assert_refused(host, home, fresh_ip(), "does not hold a valid pid")


async def test_symlinked_pid_file(host: Host, tmp_path: Path, fakes: Fakes) -> None:
    other, other_pid = fakes.start()
    home = tmp_path / "ob"
    install(home)
    (home / "run" / "observer.pid").symlink_to(other.pid_file)
    await assert_refused(host, home, fresh_ip(), "symbolic link")
    assert alive(other_pid)


async def test_running_observer_with_lock_and_ports_is_the_only_one_signalled(
    host: Host, fakes: Fakes
) -> None:
    a, pid_a = fakes.start()
    _b, pid_b = fakes.start()
    report = await procedure.stop(host, target(a, host), FAST)
    assert report.ok and not alive(pid_a)
    assert alive(pid_b)
