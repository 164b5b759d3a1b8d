"""`obstop observer probe|stop` as ops and scripts use it: exit codes, one-line reasons, --json."""

from __future__ import annotations

import json
from pathlib import Path

from obstop.fakes.install import install
from tests.support.cli import obstop
from tests.support.fakes import Fakes
from tests.support.processes import alive
from tests.support.sshd import Sshd


def test_probe_and_stop_locally(fakes: Fakes) -> None:
    fake, pid = fakes.start()
    home = ["--home-path", str(fake.home), "--ip", fake.ip]

    probe = obstop("observer", "probe", *home)
    assert probe.returncode == 0 and f"RUNNING pid {pid}" in probe.stdout

    stop = obstop("observer", "stop", *home, "--json")
    assert stop.returncode == 0, stop.stdout + stop.stderr
    report = json.loads(stop.stdout)
    assert report["ok"] and report["pid"] == pid and report["signals"] == ["SIGTERM"]
    assert not alive(pid)

    again = obstop("observer", "stop", *home)
    assert again.returncode == 0 and "already stopped" in again.stdout


def test_refusal_exits_non_zero_with_one_line(tmp_path: Path, fakes: Fakes) -> None:
    _other, other_pid = fakes.start()
    home = tmp_path / "mine"
    install(home)  # a real home path: its pid file names another deployment's observer
    (home / "run" / "observer.pid").write_text(f"{other_pid}\n")

    res = obstop("observer", "stop", "--home-path", str(home))

    assert res.returncode == 1
    assert res.stdout.count("\n") == 1 and "REFUSED" not in res.stdout and "is not the observer" in res.stdout
    assert alive(other_pid)


def test_stop_over_ssh(sshd: Sshd, fakes: Fakes) -> None:
    fake, pid = fakes.start()
    res = obstop(
        "observer",
        "stop",
        "--home-path",
        str(fake.home),
        "--ip",
        fake.ip,
        "--ssh",
        f"{sshd.user}@127.0.0.1:{sshd.port}",
        "--identity",
        str(sshd.identity),
        "--known-hosts",
        str(sshd.known_hosts),
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith(f"stopped pid {pid} with SIGTERM")
    assert not alive(pid)


def test_ssh_wrong_host_key_exits_3(sshd: Sshd, fakes: Fakes) -> None:
    fake, pid = fakes.start()
    res = obstop(
        "observer",
        "stop",
        "--home-path",
        str(fake.home),
        "--ssh",
        f"{sshd.user}@127.0.0.1:{sshd.port}",
        "--identity",
        str(sshd.identity),
        "--known-hosts",
        str(sshd.wrong_known_hosts),
    )
    assert res.returncode == 3 and "host key" in res.stderr
    assert alive(pid)


def test_bad_arguments_exit_2() -> None:
    res = obstop("observer", "stop", "--home-path", "relative/path")
    assert res.returncode == 2 and "absolute" in res.stderr
