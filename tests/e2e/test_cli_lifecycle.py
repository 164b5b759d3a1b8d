"""What an operator types, against a controller process and fake hosts: stop with a freeze that times out,
the task list and logs, rollback, stop, start, each with README's exit codes; and every kind of failure
in one line with its own code (usage 2, refused 1, unreachable 3, authentication 4)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from obstop.fakes import hosts as fakehosts
from obstop.fakes.cluster import FakeCluster
from tests.support.controller import USERS, amend_config
from tests.support.fakes import fresh_block
from tests.support.processes import wait_port


def obstop(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}
    env.pop("OBSTOP_PASSWORD", None)
    env.pop("OBSTOP_PASSWORD_FILE", None)
    return subprocess.run(
        [sys.executable, "-m", "obstop", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env=env,
    )


@pytest.fixture
def controller(tmp_path: Path) -> Iterator[Path]:
    """Two fake hosts (agentless) and a controller process; yields its config."""
    d = tmp_path / "fleet"
    fakehosts.up(d, zones=2, servers_per_zone=1, agents=False, first_ip=fresh_block(2))
    config = amend_config(d / "controller.toml", watch={"probe_interval": 0.2, "report_interval": 1})
    (d / "admin.password").write_text(USERS["admin"][0] + "\n")  # the test users replaced fakehosts' admin
    port = int(tomllib.loads(config.read_text())["api"]["listen"].rsplit(":", 1)[1])
    proc = subprocess.Popen(
        [sys.executable, "-m", "obstop", "controller", "--config", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=open(tmp_path / "controller.log", "w"),
    )
    try:
        wait_port("127.0.0.1", port, timeout=30)
        yield config
    finally:
        proc.terminate()
        proc.wait(30)
        fakehosts.down(d)


def one_line(res: subprocess.CompletedProcess[str]) -> str:
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    assert "Traceback" not in res.stderr and "HTTP 0" not in res.stderr
    return lines[0]


def test_version_and_help() -> None:
    res = obstop("--version")
    assert res.returncode == 0 and res.stdout.strip().startswith("obstop 0.")
    help_text = obstop("--help").stdout
    assert "fake-observer" not in help_text and "start" in help_text
    tasks = obstop("task", "--help").stdout
    for command in ("list", "show", "log", "retry", "rollback", "skip", "cancel"):
        assert command in tasks


def test_lifecycle_through_the_cli(controller: Path, tmp_path: Path) -> None:
    cfg = ["--config", str(controller)]
    FakeCluster(controller.parent / "cluster").configure(freeze_never=True)

    stop = obstop("stop", "1", "--watch", "--freeze-timeout", "1", *cfg)
    assert stop.returncode == 1, stop.stdout + stop.stderr  # the task failed
    assert "FAILED" in stop.stdout and "not done after 1s" in stop.stdout

    listed = json.loads(obstop("task", "list", "--status", "FAILED", "--format", "json", *cfg).stdout)
    assert [t["id"] for t in listed["contents"]] == [1] and listed["contents"][0]["subtasks"]
    table = obstop("task", "list", *cfg)
    assert table.returncode == 0 and "Stop OB cluster" in table.stdout and "FAILED" in table.stdout
    log = obstop("task", "log", "1", "--failed", *cfg)
    assert log.returncode == 0 and log.stdout.count("Prepare stop observer") == 2
    assert "checkpoint_scn still" in log.stdout and "run 1 (EXECUTE)" in log.stdout

    rollback = obstop("task", "rollback", "1", "--watch", *cfg)
    assert rollback.returncode == 0, rollback.stdout + rollback.stderr
    assert "rolling back" in rollback.stdout and "(ROLLBACK)" in rollback.stdout
    again = obstop("task", "rollback", "1", *cfg)
    assert again.returncode == 1 and "20003" in one_line(again)  # refused: it is SUCCESSFUL

    FakeCluster(controller.parent / "cluster").configure(freeze_never=False)
    assert obstop("stop", "1", "--watch", *cfg).returncode == 0
    start = obstop("start", "1", "--watch", *cfg)
    assert start.returncode == 0, start.stdout + start.stderr
    assert "Start OB cluster" in start.stdout and "SUCCESSFUL" in start.stdout
    refused = obstop("start", "1", *cfg)
    assert refused.returncode == 1 and "50002" in one_line(refused) and "RUNNING" in refused.stderr
    missing = obstop("task", "skip", "1", "999999", *cfg)
    assert missing.returncode == 1 and "has no subtask 999999" in one_line(missing)


def test_every_kind_of_failure_has_its_exit_code(controller: Path, tmp_path: Path) -> None:
    url = tomllib.loads(controller.read_text())["api"]["listen"]
    api = ["--url", f"http://{url}"]
    viewer_pw = tmp_path / "viewer.password"
    viewer_pw.write_text(USERS["viewer"][0] + "\n")
    empty = tmp_path / "empty.password"
    empty.write_text("")

    res = obstop("task", "list", *api, "--password-file", str(tmp_path / "nope"))
    assert res.returncode == 2 and "password file" in one_line(res) and "no such file" in res.stderr
    res = obstop("task", "list", *api, "--password-file", str(empty))
    assert res.returncode == 4 and "which is empty" in one_line(res)
    res = obstop("stop", "1", *api, "--user", "viewer", "--password-file", str(viewer_pw))
    assert res.returncode == 4 and "CLUSTER_MANAGER" in one_line(res)
    res = obstop("task", "list", "--url", "http://127.0.0.1:9", "--password-file", str(viewer_pw))
    assert res.returncode == 3 and "cannot reach the controller at http://127.0.0.1:9" in one_line(res)
    res = obstop("task", "show", "not-a-number", *api)
    assert res.returncode == 2
    res = obstop(
        "task", "list", "--sort", "secret", *api, "--user", "viewer", "--password-file", str(viewer_pw)
    )
    assert res.returncode == 2 and "sort" in one_line(res)
    res = obstop("task", "show", "99", *api, "--user", "viewer", "--password-file", str(viewer_pw))
    assert res.returncode == 1 and "no task with id 99" in one_line(res)
