"""The metrics an on-call needs, as Prometheus scrapes them from /metrics while a stop runs and after it:
tasks by status, subtask durations by name, agent presence, command round trips, MQTT connections and
API latency by route. And the agents' JSON log lines."""

from __future__ import annotations

import json
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from tests.support.controller import Env, amend_config, running
from tests.support.fleet import Fleets, agent_log

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(env: Env) -> Samples:
    r = await env.client.get("/metrics")  # no credentials: Prometheus scrapes it as is
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(r.text)
        for s in family.samples
    }


def value(samples: Samples, metric: str, **labels: str) -> float:
    return samples.get((metric, frozenset(labels.items())), 0.0)


async def test_metrics_during_and_after_a_stop(fleets: Fleets) -> None:
    fleet = await fleets.up(zones=2, per_zone=1)
    async with running(amend_config(Path(fleet.dir) / "controller.toml")) as env:
        task_id = (await env.stop()).json()["data"]["id"]
        during = await scrape(env)  # the freeze wait (0.3 s) keeps it running at least that long
        assert value(during, "obstop_tasks", status="RUNNING") == 1
        assert value(during, "obstop_tasks", status="SUCCESSFUL") == 0
        assert await env.wait(task_id) == "SUCCESSFUL"

        after = await scrape(env)
        assert value(after, "obstop_tasks", status="RUNNING") == 0
        assert value(after, "obstop_tasks", status="SUCCESSFUL") == 1
        for name, count in (("Stop observer process", 2), ("Prepare stop cluster", 1), ("Wait node", 4)):
            labels = {"name": name, "outcome": "ok"}
            assert value(after, "obstop_subtask_duration_seconds_count", **labels) == count, name
            if name != "Wait node":  # a Wait node is finished in the transaction that readies it: 0 s
                assert value(after, "obstop_subtask_duration_seconds_sum", **labels) > 0
        for h in fleet.hosts:
            assert value(after, "obstop_agent_up", agent=h.host) == 1
        for kind in ("stop_observer", "probe_observer"):
            assert value(after, "obstop_command_round_trip_seconds_count", kind=kind, outcome="ok") == 2
        assert value(after, "obstop_mqtt_connections_total") == 1
        assert value(after, "obstop_mqtt_reconnects_total") == 0
        stop_route = {"method": "POST", "route": "/api/v2/ob/clusters/{id}/stop", "status": "200"}
        assert value(after, "obstop_api_request_duration_seconds_count", **stop_route) == 1
        # ids never become labels: one series for every task read
        await env.get(f"/api/v2/tasks/instances/{task_id}")
        again = await scrape(env)
        read = {"method": "GET", "route": "/api/v2/tasks/instances/{id}", "status": "200"}
        assert value(again, "obstop_api_request_duration_seconds_count", **read) == 1
        assert not [k for k in again if str(task_id) in dict(k[1]).get("route", "x")]

    # the agents' logs too are JSON lines (agent.log is no terminal), naming the command, task and subtask
    for h in fleet.hosts:
        lines = [json.loads(line) for line in agent_log(fleet, h).splitlines() if line.strip()]
        (stopped,) = [x for x in lines if x["message"].endswith(": stopped")]
        assert (
            stopped["taskId"] == task_id and f"-t{task_id}-s{stopped['subtaskId']}-" in stopped["commandId"]
        )
