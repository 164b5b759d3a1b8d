"""What an operator types: fakehosts up, a controller process, `obstop stop --watch`, `obstop task show`,
fakehosts down; and `obstop demo` on the embedded broker."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import psutil

from tests.support.cli import obstop
from tests.support.controller_process import api_port
from tests.support.fakes import fresh_block
from tests.support.mosquitto import Mosquitto
from tests.support.processes import obstop_argv, processes_under, wait_port


def test_operator_flow_through_the_cli(tmp_path: Path, broker: Mosquitto) -> None:
    d = tmp_path / "fleet"
    up = obstop(
        "fakehosts",
        "up",
        "--dir",
        str(d),
        "--zones",
        "1",
        "--servers-per-zone",
        "2",
        "--broker",
        broker.url,
        "--first-ip",
        fresh_block(2),
    )
    assert up.returncode == 0, up.stderr
    for name in ("inventory.toml", "controller.toml", "admin.password"):
        assert (d / name).exists()
    with open(tmp_path / "controller.log", "w") as log:
        controller = subprocess.Popen(
            obstop_argv("controller", "--config", str(d / "controller.toml")),
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
    try:
        port = api_port(d / "controller.toml")
        wait_port("127.0.0.1", port)
        cfg = ["--config", str(d / "controller.toml")]

        stop = obstop("stop", "1", "--watch", *cfg)
        assert stop.returncode == 0, stop.stdout + stop.stderr
        assert "SUCCESSFUL" in stop.stdout and "Stop observer process" in stop.stdout

        as_json = json.loads(obstop("task", "show", "1", "--format", "json", *cfg).stdout)
        assert (
            as_json["status"] == "SUCCESSFUL"
            and len(as_json["tasks"]) == 1 + 1 + 1 + 2 + 1 + 2 + 1 + 2 + 1 + 1 + 1
        )
        dot = obstop("task", "show", "1", "--format", "dot", *cfg).stdout
        assert dot.startswith('digraph "task 1"') and "->" in dot
        mermaid = obstop("task", "show", "1", "--format", "mermaid", *cfg).stdout
        assert mermaid.startswith("flowchart LR") and "-->" in mermaid

        again = obstop("stop", "1", *cfg)
        assert again.returncode != 0 and "STOPPED" in again.stderr
        wrong = obstop(
            "task", "show", "1", "--url", f"http://127.0.0.1:{port}", "--password-file", "/dev/null"
        )
        assert wrong.returncode == 4 and "401" in wrong.stderr  # authentication: README's exit-code table
    finally:
        controller.terminate()
        assert controller.wait(30) == 0
    down = obstop("fakehosts", "down", "--dir", str(d))
    assert down.returncode == 0, down.stderr
    assert processes_under(d) == []


def test_demo_runs_on_the_embedded_broker() -> None:
    # addresses of its own, and its own leftovers checked: other tests (another demo) may run meanwhile
    res = obstop("demo", "--zones", "2", "--first-ip", fresh_block(2), timeout=180)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "Stop OB cluster SUCCESSFUL" in res.stdout and "cluster obcluster STOPPED" in res.stdout
    assert "observers stopped in" in res.stdout
    # the demo ends by starting the cluster again: every observer back and listening
    assert "Start OB cluster SUCCESSFUL" in res.stdout and "cluster obcluster RUNNING" in res.stdout
    assert "2 observers back and listening" in res.stdout
    work = re.search(r"fake hosts in (\S+)/hosts", res.stdout)
    assert work is not None and processes_under(Path(work.group(1))) == []


def test_fakehosts_down_spares_other_processes_in_its_directory(tmp_path: Path) -> None:
    d = tmp_path / "fleet"
    up = obstop(
        "fakehosts", "up", "--dir", str(d), "--zones", "1", "--no-agents", "--first-ip", fresh_block(1)
    )
    assert up.returncode == 0, up.stderr
    operator_shell = subprocess.Popen(["sleep", "300"], cwd=d)  # someone working in the fleet's directory
    try:
        down = obstop("fakehosts", "down", "--dir", str(d))
        assert down.returncode == 0
        assert psutil.pid_exists(operator_shell.pid) and operator_shell.poll() is None
        assert [p for p in processes_under(d) if p != operator_shell.pid] == []
    finally:
        operator_shell.kill()
        operator_shell.wait()
