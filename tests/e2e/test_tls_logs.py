"""The API over TLS with a self-signed CA (the ops client verifies against it, and refuses otherwise), the
plan and the audit trail through the CLI, and the controller's log as JSON lines carrying trace ids."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from obstop.fakes.net import free_port
from tests.support.cli import obstop
from tests.support.controller import USERS, write_config
from tests.support.controller_process import ControllerProcess
from tests.support.fakes import Fakes, start_cluster
from tests.support.tls import make_pki

Controllers = Callable[..., ControllerProcess]


def config(tmp_path: Path, fakes: Fakes, **api: object) -> Path:
    cluster = start_cluster(fakes, 1, 2)
    (tmp_path / "admin.password").write_text(USERS["admin"][0] + "\n")  # the CLI finds it beside the config
    return write_config(
        tmp_path, cluster, f"sqlite:///{tmp_path}/c.db", api={"listen": f"127.0.0.1:{free_port()}", **api}
    )


def one_line(res: object) -> str:
    err = str(getattr(res, "stderr", "")).strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


def test_tls_with_a_self_signed_ca(tmp_path: Path, fakes: Fakes, controllers: Controllers) -> None:
    pki = make_pki(tmp_path / "pki")
    cfg_path = config(tmp_path, fakes, tls_cert=str(pki.cert), tls_key=str(pki.key))
    ctl = controllers(cfg_path, ca_file=pki.ca)
    ctl.start()
    cfg = ["--config", str(cfg_path)]  # https, from [api] tls_cert

    plan = obstop("stop", "1", "--plan", *cfg, "--ca-file", str(pki.ca))
    assert plan.returncode == 0, plan.stdout + plan.stderr
    assert "would run" in plan.stdout and "nothing was done" in plan.stdout
    stop = obstop("stop", "1", "--watch", *cfg, env={"OBSTOP_CA_FILE": str(pki.ca)})
    assert stop.returncode == 0 and "SUCCESSFUL" in stop.stdout, stop.stdout + stop.stderr

    # without the CA, or with another one, the client refuses the controller: exit 3, one line saying why
    for extra in ([], ["--ca-file", str(make_pki(tmp_path / "other", "another CA").ca)]):
        res = obstop("task", "list", *cfg, *extra)
        assert res.returncode == 3 and "CERTIFICATE_VERIFY_FAILED" in one_line(res), res.stderr
        assert "--ca-file" in res.stderr
    missing = obstop("task", "list", *cfg, "--ca-file", str(tmp_path / "nope.pem"))
    assert missing.returncode == 2 and "no such file" in one_line(missing)
    # plain HTTP is not served on the TLS port
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://127.0.0.1:{ctl.port}/api/status", timeout=5)

    audit = obstop("audit", *cfg, "--ca-file", str(pki.ca))
    assert audit.returncode == 0, audit.stderr
    assert "POST /api/v2/ob/clusters/1/stop?dryRun=true" in audit.stdout
    assert audit.stdout.count("POST /api/v2/ob/clusters/1/stop") == 2 and "admin" in audit.stdout
    as_json = json.loads(obstop("audit", "--format", "json", *cfg, "--ca-file", str(pki.ca)).stdout)
    assert [e["query"] for e in as_json["contents"]] == ["", "dryRun=true"]


def test_log_lines_are_json_with_their_trace_id(
    tmp_path: Path, fakes: Fakes, controllers: Controllers
) -> None:
    ctl = controllers(config(tmp_path, fakes))
    ctl.start()
    r = ctl.http.post("/api/v2/ob/clusters/1/stop")
    assert r.status_code == 200, r.text
    trace, task_id = r.headers["x-trace-id"], r.json()["data"]["id"]
    assert ctl.finish(task_id) == "SUCCESSFUL"
    assert ctl.stop() == 0
    lines = [json.loads(line) for line in ctl.log.read_text().splitlines() if line.strip()]  # each one JSON
    assert all({"timestamp", "level", "logger", "message"} <= set(x) for x in lines)
    (call,) = [x for x in lines if x.get("traceId") == trace]
    assert call["logger"] == "obstop.audit" and "POST /api/v2/ob/clusters/1/stop by admin" in call["message"]
    ended = [x for x in lines if x["message"] == f"task {task_id} SUCCESSFUL"]
    assert ended and ended[0]["taskId"] == task_id and isinstance(ended[0]["subtaskId"], int)
