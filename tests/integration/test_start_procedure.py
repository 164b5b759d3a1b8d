"""The start procedure and its launch primitive, locally and over a real sshd: a stopped observer comes
back from its home with its persisted configuration; one running is not launched twice; a launch is
journalled and never repeated; a cancel before it means no launch; and it runs as the home's owner."""

from __future__ import annotations

import os
import pwd
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from obstop.agent import procedure, starting
from obstop.agent.cancel import CANCEL_MARK, CancelToken
from obstop.agent.errors import LaunchRefused
from obstop.agent.executors.host import Host
from obstop.agent.executors.local import LocalHost
from obstop.agent.executors.ssh_config import SSHHostConfig
from obstop.agent.protocol import ObserverTarget, StartOptions
from tests.support.fakes import Fakes
from tests.support.lifecycle import starts
from tests.support.marks import Marks
from tests.support.processes import alive
from tests.support.sshd import Sshd


def target(host: Host, fake: object) -> ObserverTarget:
    return ObserverTarget(host=host.name, ip=fake.ip, home_path=str(fake.home))  # type: ignore[attr-defined]


async def test_start_after_stop_and_not_twice(host: Host, fakes: Fakes) -> None:
    fake, pid = fakes.start()
    t = target(host, fake)
    assert (await procedure.stop(host, t)).ok and not alive(pid)

    journal = Marks()
    report = await starting.start(host, t, StartOptions(ready_timeout=20), journal=journal)
    assert report.ok and report.launched and not report.already_running, report
    assert report.pid is not None and report.pid != pid and alive(report.pid)
    assert journal.recorded == [starting.LAUNCH_MARK] and starts(fake.home) == 2

    again = await starting.start(host, t, StartOptions(ready_timeout=20), journal=Marks())
    assert again.ok and again.already_running and not again.launched and again.pid == report.pid
    resumed = await starting.start(host, t, StartOptions(ready_timeout=20), journal=journal)
    assert resumed.ok and resumed.launched and not resumed.already_running  # this command's own launch
    assert starts(fake.home) == 2


async def test_a_journalled_launch_or_cancel_is_never_followed_by_a_launch(fakes: Fakes) -> None:
    host = LocalHost("local")
    fake, _ = fakes.start()
    t = target(host, fake)
    assert (await procedure.stop(host, t)).ok
    cancelled = await starting.start(host, t, journal=Marks(), cancel=CancelToken(cancelled=True))
    assert not cancelled.ok and cancelled.reason == "cancelled before the launch"
    waited = await starting.start(
        host, t, StartOptions(ready_timeout=1), journal=Marks(starting.LAUNCH_MARK, CANCEL_MARK)
    )
    assert not waited.ok and "no observer runs" in (waited.reason or "")  # it waited, did not launch
    assert starts(fake.home) == 1


async def test_a_start_that_cannot_come_back_says_why(host: Host, fakes: Fakes) -> None:
    fake, _ = fakes.start()
    t = target(host, fake)
    assert (await procedure.stop(host, t)).ok
    (fake.home / "etc" / "observer.config.bin").unlink()
    report = await starting.start(host, t, StartOptions(ready_timeout=5))
    assert not report.ok and report.launched
    assert "exited with status 1" in (report.reason or "") and "observer.config.bin" in (report.reason or "")


@pytest.fixture
def nobodys_home() -> Iterator[Path]:
    """A home owned by another user (nobody), on a path that user can reach."""
    root = Path(tempfile.mkdtemp(prefix="obstop-owner-"))
    root.chmod(0o755)
    home = root / "oceanbase"
    (home / "bin").mkdir(parents=True)
    (home / "run").mkdir()
    script = home / "bin" / "observer"
    # a stand-in that only says who ran it, from where (the real fake needs our python, under /root)
    script.write_text("#!/bin/sh\nid -un > run/launched-by\npwd >> run/launched-by\n")
    script.chmod(0o755)
    nobody = pwd.getpwnam("nobody")
    for p in (home, home / "bin", home / "run", script):
        os.chown(p, nobody.pw_uid, nobody.pw_gid)
    try:
        yield home
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.skipif(os.geteuid() != 0, reason="becoming another user needs root")
async def test_local_launch_runs_as_the_owner_of_the_home(nobodys_home: Path) -> None:
    launch = await LocalHost("local").launch(str(nobodys_home), timeout=10)
    assert launch.exit_status == 0 and launch.user == "nobody"
    assert (nobodys_home / "run" / "launched-by").read_text().split() == ["nobody", str(nobodys_home)]


@pytest.mark.ssh
async def test_ssh_launch_refuses_a_home_the_ssh_user_does_not_own(sshd: Sshd, nobodys_home: Path) -> None:
    host = SSHHostConfig(
        host="ssh",
        address="127.0.0.1",
        user=sshd.user,
        identity=sshd.identity,
        known_hosts=sshd.known_hosts,
        port=sshd.port,
    ).open()
    try:
        with pytest.raises(LaunchRefused, match=f"belongs to nobody; SSH user {sshd.user} cannot"):
            await host.launch(str(nobodys_home), timeout=10)
    finally:
        await host.close()
    assert not (nobodys_home / "run" / "launched-by").exists()
