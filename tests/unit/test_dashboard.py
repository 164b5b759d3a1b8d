"""deploy/grafana's dashboard asks only for metrics the controller exposes (a renamed metric would leave
an on-call with an empty panel)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from obstop.controller.metrics import Metrics

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "obstop.json"


def test_every_metric_of_the_dashboard_is_exposed() -> None:
    suffixes = {"histogram": ("_bucket", "_count", "_sum"), "counter": ("_total",), "gauge": ("",)}
    exposed = {f.name + end for f in Metrics().registry.collect() for end in suffixes[f.type]}
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    asked = {m for e in exprs for m in re.findall(r"\bobstop_[a-z_]+", e)}
    assert asked and asked <= exposed, asked - exposed
    # the six an on-call needs are each on it
    for metric in (
        "obstop_tasks",
        "obstop_subtask_duration_seconds_bucket",
        "obstop_agent_up",
        "obstop_command_round_trip_seconds_bucket",
        "obstop_mqtt_reconnects_total",
        "obstop_api_request_duration_seconds_bucket",
    ):
        assert metric in asked, metric
