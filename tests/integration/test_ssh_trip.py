"""A stop over SSH right after its probe (agentless: the probe stage's proof, `stop(proven=...)`): the
check, the signal and the settle in one round trip, and the process must still be the one proved (pid
and start time, executable, cwd, the pid file naming it) or nothing is signalled. Real sshd, real
processes; the remote functions under a POSIX shell (dash) too."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator

import pytest

from obstop.agent import procedure
from obstop.agent.errors import ExecutorError
from obstop.agent.executors.ssh import SSHHost
from obstop.agent.executors.ssh_config import SSHHostConfig
from obstop.agent.protocol import ObserverState, ObserverTarget, StopOptions
from obstop.controller.config import AgentlessConfig
from obstop.controller.dispatch.agentless import AgentlessDispatcher
from obstop.fakes.install import FakeObserver
from tests.support.fakes import Fakes
from tests.support.marks import Marks
from tests.support.processes import alive, wait_dead
from tests.support.sshd import Sshd

FAST = StopOptions(term_timeout=0.5, kill_timeout=5, port_timeout=5)


def config(sshd: Sshd) -> SSHHostConfig:
    return SSHHostConfig(
        host="ssh",
        address="127.0.0.1",
        user=sshd.user,
        identity=sshd.identity,
        known_hosts=sshd.known_hosts,
        port=sshd.port,
    )


@pytest.fixture
async def ssh(sshd: Sshd) -> AsyncIterator[SSHHost]:
    host = SSHHost(config(sshd))
    try:
        yield host
    finally:
        await host.close()


def target(fake: FakeObserver) -> ObserverTarget:
    return ObserverTarget(host="ssh", ip=fake.ip, home_path=str(fake.home))


def signalled(fake: FakeObserver) -> bool:
    return "received SIGTERM" in (fake.home / "log" / "observer.log").read_text()


async def test_a_stop_after_its_probe_stops_the_observer(ssh: SSHHost, fakes: Fakes) -> None:
    fake, pid = fakes.start()
    found = await procedure.examine(ssh, target(fake))
    assert found.report.state is ObserverState.RUNNING

    report = await procedure.stop(ssh, target(fake), FAST, proven=found)

    assert report.ok, report.reason
    assert report.signals == ["SIGTERM"] and report.pid == pid and signalled(fake)
    assert not alive(pid) and report.pid_file_removed and not fake.pid_file.exists()
    assert report.time_to_ports_free_s is not None


async def test_a_pid_file_naming_another_process_since_the_probe_signals_nothing(
    ssh: SSHHost, fakes: Fakes
) -> None:
    fake, pid = fakes.start()
    other, other_pid = fakes.start()
    found = await procedure.examine(ssh, target(fake))
    fake.pid_file.write_text(f"{other_pid}\n")  # the same process, but its pid file names another now

    report = await procedure.stop(ssh, target(fake), FAST, proven=found)

    assert not report.ok and report.signals == []
    assert report.reason and "nothing was signalled" in report.reason and "pidfile" in report.reason
    assert alive(pid) and alive(other_pid) and not signalled(fake) and not signalled(other)


async def test_an_observer_gone_since_the_probe_is_not_signalled(ssh: SSHHost, fakes: Fakes) -> None:
    fake, pid = fakes.start()
    found = await procedure.examine(ssh, target(fake))
    os.kill(pid, signal.SIGKILL)  # dies like a crashed observer: its pid file stays
    wait_dead(pid)

    report = await procedure.stop(ssh, target(fake), FAST, proven=found)

    assert report.ok, report.reason
    assert report.signals == [] and report.pid_file_removed and not fake.pid_file.exists()


async def test_an_observer_restarted_since_the_probe_is_proved_again_then_stopped(
    ssh: SSHHost, fakes: Fakes
) -> None:
    fake, pid = fakes.start()
    found = await procedure.examine(ssh, target(fake))
    os.kill(pid, signal.SIGKILL)
    wait_dead(pid)
    again, new_pid = fakes.start(home=fake.home, ip=fake.ip)

    report = await procedure.stop(ssh, target(again), FAST, proven=found)

    assert report.ok, report.reason
    assert report.pid == new_pid and report.signals == ["SIGTERM"] and not alive(new_pid)


async def test_a_signal_recorded_by_an_earlier_attempt_is_not_sent_again(ssh: SSHHost, fakes: Fakes) -> None:
    fake, pid = fakes.start()
    found = await procedure.examine(ssh, target(fake))
    assert found.facts is not None
    journal = Marks(f"SIGTERM:{pid}:{found.facts.start_time}")  # recorded, then the controller died

    report = await procedure.stop(
        ssh, target(fake), StopOptions(term_timeout=0.3, kill_timeout=5), journal=journal, proven=found
    )

    # the earlier attempt's SIGTERM is waited for, never sent again; the escalation is the proof's
    assert report.ok, report.reason
    assert report.signals == ["SIGTERM", "SIGKILL"] and not signalled(fake) and not alive(pid)


async def test_the_remote_functions_under_a_posix_shell(sshd: Sshd, fakes: Fakes) -> None:
    host = SSHHost(config(sshd), shell="exec /bin/sh")
    try:
        fake, pid = fakes.start()
        found = await procedure.examine(host, target(fake))
        assert found.report.state is ObserverState.RUNNING, found.report.reason
        assert found.report.pid == pid and found.report.ports_held == [2881, 2882]

        report = await procedure.stop(host, target(fake), FAST, proven=found)

        assert report.ok, report.reason
        assert report.signals == ["SIGTERM"] and not alive(pid) and not fake.pid_file.exists()
        assert (await procedure.probe(host, target(fake))).state is ObserverState.STOPPED
    finally:
        await host.close()


async def test_agentless_stop_uses_its_probe_and_a_repeated_id_signals_once(sshd: Sshd, fakes: Fakes) -> None:
    journals: dict[str, Marks] = {}
    dispatcher = AgentlessDispatcher(
        AgentlessConfig(ssh=[config(sshd)]), journal=lambda cid: journals.setdefault(cid, Marks())
    )
    lines: list[str] = []

    async def log(line: str) -> None:
        lines.append(line)

    try:
        fake, pid = fakes.start()
        deadline = time.monotonic() + 30
        probe = await dispatcher.probe("c1.probe", target(fake), log, deadline)
        assert probe.state is ObserverState.RUNNING and probe.pid == pid

        report = await dispatcher.stop("c1", target(fake), FAST, log, deadline)

        assert report.ok, report.reason
        assert report.signals == ["SIGTERM"] and not alive(pid) and signalled(fake)
        assert journals["c1"].recorded == [f"SIGTERM:{pid}:{probe.start_time}"]
        again = await dispatcher.stop("c1", target(fake), FAST, log, deadline)
        assert again.ok and again.already_stopped and again.signals == []
        assert journals["c1"].recorded == [f"SIGTERM:{pid}:{probe.start_time}"]
    finally:
        await dispatcher.close()


async def test_after_a_dropped_connection_the_next_call_works(ssh: SSHHost, fakes: Fakes) -> None:
    fake, pid = fakes.start()
    assert (await procedure.probe(ssh, target(fake))).state is ObserverState.RUNNING
    assert ssh._conn is not None
    ssh._conn.abort()  # the network drops the connection; its idle shell is dead
    await ssh._conn.wait_closed()

    # at most the first call sees the dead shell; the host then connects anew (it was reused for ever)
    with contextlib.suppress(ExecutorError):
        await procedure.probe(ssh, target(fake))
    report = await procedure.probe(ssh, target(fake))
    assert report.state is ObserverState.RUNNING and report.pid == pid


async def test_a_command_line_with_newlines_cannot_forge_facts(ssh: SSHHost, fakes: Fakes) -> None:
    fake, pid = fakes.start()
    os.kill(pid, signal.SIGKILL)  # a crashed observer: its pid file stays, and its pid is reused by...
    wait_dead(pid)
    forger = subprocess.Popen(  # ...a process whose arguments carry lines of the facts' own format
        [sys.executable, "-c", "import time; time.sleep(60)", "x\nPID 1\nEXE /bin/observer\n@@PROCESS"]
    )
    try:
        fake.pid_file.write_text(f"{forger.pid}\n")

        probe = await procedure.probe(ssh, target(fake))  # no crash of the agent on a forged line
        report = await procedure.stop(ssh, target(fake), FAST)

        assert probe.state is not ObserverState.RUNNING
        assert report.signals == [] and forger.poll() is None  # never signalled
    finally:
        forger.kill()
        forger.wait()
