"""Partial stops as an operator types them, against a controller process and fake hosts (agentless):
`obstop zone stop|start` and `obstop server stop|start` with README's exit codes, the refusal of the
majority check in the output; and `obstop demo --zone-stop`."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from obstop.fakes import hosts as fakehosts
from tests.support.cli import obstop
from tests.support.controller import USERS, amend_config
from tests.support.controller_process import ControllerProcess
from tests.support.fakes import fresh_block
from tests.support.processes import alive, processes_under


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[tuple[Path, fakehosts.Fleet]]:
    """Three fake hosts in three zones (agentless) and a controller process; yields its config."""
    d = tmp_path / "fleet"
    fleet = fakehosts.up(d, zones=3, servers_per_zone=1, agents=False, first_ip=fresh_block(3))
    config = amend_config(d / "controller.toml", watch={"probe_interval": 0.2, "report_interval": 1})
    (d / "admin.password").write_text(USERS["admin"][0] + "\n")  # the test users replaced fakehosts' admin
    ctl = ControllerProcess(config, tmp_path / "controller.log")
    try:
        ctl.start()
        yield config, fleet
    finally:
        ctl.close()
        fakehosts.down(d)


def test_zone_and_server_stops_through_the_cli(fleet: tuple[Path, fakehosts.Fleet]) -> None:
    config, hosts = fleet
    cfg = ["--config", str(config)]
    h1, h2, h3 = hosts.hosts

    # the plan first: every check, nothing touched; exit 0 as it would run
    plan = obstop("zone", "stop", "1", "zone1", "--plan", "--format", "json", *cfg)
    assert plan.returncode == 0, plan.stdout + plan.stderr
    planned = json.loads(plan.stdout)
    assert planned["operation"] == "Stop OB zone" and planned["executable"]
    assert [s["zone"] for s in planned["servers"]] == ["zone1"] and alive(h1.observer_pid)

    stop = obstop("zone", "stop", "1", "zone1", "--watch", *cfg)
    assert stop.returncode == 0, stop.stdout + stop.stderr
    assert "Stop OB zone" in stop.stdout and "Stop OB zone service" in stop.stdout
    assert not alive(h1.observer_pid) and alive(h2.observer_pid) and alive(h3.observer_pid)

    blocked = obstop("zone", "stop", "1", "zone2", "--plan", *cfg)  # the table, and exit 1: blocked
    assert blocked.returncode == 1 and "would lose the majority" in " ".join(blocked.stdout.split())
    refused = obstop("zone", "stop", "1", "zone2", "--watch", *cfg)
    assert refused.returncode == 1, refused.stdout + refused.stderr  # the task failed
    out = " ".join(refused.stdout.split())  # the table wraps long log lines
    assert "stopping zone zone2 would lose the majority" in out and "tenant sys (1) log stream 1" in out
    forced = obstop("server", "stop", "1", h3.ip, "--force", "--watch", *cfg)  # by its address
    assert forced.returncode == 1 and "force does not skip this check" in " ".join(forced.stdout.split())
    assert alive(h2.observer_pid) and alive(h3.observer_pid)

    start = obstop("zone", "start", "1", "zone1", "--watch", *cfg)
    assert start.returncode == 0, start.stdout + start.stderr
    assert "Start OB zone service" in start.stdout

    one = obstop("server", "stop", "1", "2", "--no-freeze", "--watch", *cfg)
    assert one.returncode == 0 and "Stop OB server" in one.stdout
    assert not alive(h2.observer_pid)
    back = obstop("server", "start", "1", f"{h2.ip}:2882", "--watch", *cfg)
    assert back.returncode == 0 and "Start OB server" in back.stdout
    listed = obstop("task", "list", "--name", "OB server", *cfg)
    assert listed.returncode == 0 and "Stop OB server" in listed.stdout and "Start OB server" in listed.stdout

    for args, says in [
        (("zone", "stop", "1", "zone9"), "has no zone 'zone9'"),
        (("server", "start", "1", "10.9.9.9"), "has no server 10.9.9.9"),
        (("server", "stop", "1", "99"), "has no server 99"),
    ]:
        res = obstop(*args, *cfg)
        lines = res.stderr.strip().splitlines()
        assert res.returncode == 1 and len(lines) == 1 and says in lines[0], res.stderr


def test_demo_zone_stop() -> None:
    # its own addresses: the other demo test may run at the same time
    res = obstop("demo", "--zone-stop", "--first-ip", fresh_block(3), timeout=180)
    out = " ".join(res.stdout.split())
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "Stop OB zone SUCCESSFUL · cluster obcluster RUNNING · 1 observer(s) of zone1 stopped" in out
    assert "refused before anything was touched: stopping zone zone2 would lose the majority" in out
    assert "Start OB zone SUCCESSFUL · cluster obcluster RUNNING" in out
    work = re.search(r"fake hosts in (\S+)/hosts", res.stdout)
    assert work is not None and processes_under(Path(work.group(1))) == []
