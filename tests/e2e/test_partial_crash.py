"""The controller as a real process, killed with SIGKILL in the middle of a zone stop and started again:
it resumes the task and finishes it, the zone's observer is signalled once, and the other zones' observers
are never touched."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from obstop.fakes.cluster import FakeCluster
from obstop.fakes.net import free_port
from tests.support.controller_process import ControllerProcess
from tests.support.fakes import Fakes
from tests.support.processes import alive, until
from tests.support.sqlcluster import PASSWORD, config, start_zones


def running(ctl: ControllerProcess, task_id: int, name: str) -> bool:
    return any(s["name"] == name and s["status"] == "RUNNING" for s in ctl.task(task_id)["tasks"])


def said(cluster_dir: Path, sql: str) -> bool:
    return any(s.sql == sql for s in FakeCluster(cluster_dir).statements())


@pytest.mark.parametrize("crash_point", ["in-stop-zone", "while-stopping-the-process"])
def test_sigkill_mid_zone_stop_resumes_it(
    tmp_path: Path, fakes: Fakes, controllers: Callable[..., ControllerProcess], crash_point: str
) -> None:
    cluster_dir = tmp_path / "cluster"
    fc = FakeCluster.create(cluster_dir, password=PASSWORD, freeze_delay=0.2)
    in_sql = crash_point == "in-stop-zone"
    if in_sql:
        fc.configure(stop_zone_delay=3)  # STOP ZONE takes a while: the controller dies waiting for it
    # else zone1's observer ignores SIGTERM: the controller dies while its stop waits to escalate
    cluster = start_zones(fakes, cluster_dir, zones=3, per_zone=1, misbehave={0: ["--ignore-sigterm"]})
    path = config(
        tmp_path,
        cluster,
        api={"listen": f"127.0.0.1:{free_port()}"},
        engine={"lease_seconds": 5},
        stop={"term_timeout": 3},
        watch={"probe_interval": 0.2, "report_interval": 1},
    )
    ctl = controllers(path)
    ctl.start()
    task_id = ctl.run_task("/api/v2/ob/clusters/1/zones/zone1/stop")

    def crashed() -> bool:
        if in_sql:
            return running(ctl, task_id, "Stop OB zone service") and said(
                cluster_dir, "ALTER SYSTEM STOP ZONE 'zone1'"
            )
        logs = ctl.logs(task_id, "Stop observer process")
        return running(ctl, task_id, "Stop observer process") and any("sending SIGTERM" in x for x in logs)

    until(crashed, f"never reached {crash_point}", timeout=60)
    ctl.kill()
    ctl.start()
    assert ctl.finish(task_id) == "SUCCESSFUL"

    assert not alive(cluster.pids[0])
    assert [f.pid() for f in cluster.fakes[1:]] == cluster.pids[1:] and all(map(alive, cluster.pids[1:]))
    sigterms = [s.server for s in fc.statements() if s.sql == "SIGNAL SIGTERM"]
    assert sigterms == [f"{cluster.fakes[0].ip}:2881"]  # one SIGTERM, to zone1's observer only
    assert dict(fc.zones())["zone1"] == "INACTIVE"
    stop_log = "\n".join(ctl.logs(task_id, "Stop observer process"))
    assert stop_log.count("sending SIGTERM") == 1 and "sending SIGKILL" in stop_log
    if not in_sql:
        assert "SIGTERM was already sent to pid" in stop_log

    def shown() -> tuple[str, dict[str, str]]:
        c = ctl.http.get("/api/v2/ob/clusters/1").json()["data"]
        return c["status"], {z["name"]: z["status"] for z in c["zones"]}

    wanted = ("RUNNING", {"zone1": "STOPPED", "zone2": "RUNNING", "zone3": "RUNNING"})
    until(lambda: shown() == wanted, f"the cluster shows {shown()}, not {wanted}")
    assert ctl.stop() == 0
