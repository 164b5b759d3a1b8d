"""The Prometheus metrics an on-call needs, registered in one place (one registry per controller):

    obstop_tasks{status}                                 tasks by status, read from the store at each scrape
    obstop_subtask_duration_seconds{name,outcome}        how long each kind of subtask takes (engine)
    obstop_agent_up{agent}                               1 while an agent's presence says online (dispatch)
    obstop_command_round_trip_seconds{kind,outcome}      a command's first send to its answer (dispatch)
    obstop_mqtt_connections_total, ..._reconnects_total  connections made to the broker (dispatch)
    obstop_api_request_duration_seconds{method,route,status}  API latency by route template (middleware)

Components hold a `Metrics` and call its small hooks; a component built without one gets `NULL`, which
counts into a registry nobody reads. Imports nothing of the store, steps or dispatch (they import this).
"""

from __future__ import annotations

import time
from collections.abc import Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from obstop.controller.states.task import TaskStatus

STEP_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800)
FAST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        r = self.registry = registry or CollectorRegistry()
        self.tasks = Gauge("obstop_tasks", "Tasks by status", ["status"], registry=r)
        self.subtask_seconds = Histogram(
            "obstop_subtask_duration_seconds",
            "How long subtasks took, by name and outcome (ok, failed)",
            ["name", "outcome"],
            buckets=STEP_BUCKETS,
            registry=r,
        )
        self.agent_up = Gauge(
            "obstop_agent_up", "1 while the agent's presence says online", ["agent"], registry=r
        )
        self.command_seconds = Histogram(
            "obstop_command_round_trip_seconds",
            "From a command's first send to the agent's answer, by kind and outcome (ok, error, no_answer)",
            ["kind", "outcome"],
            buckets=FAST_BUCKETS,
            registry=r,
        )
        self.mqtt_connections = Counter(
            "obstop_mqtt_connections", "Connections made to the MQTT broker", registry=r
        )
        self.mqtt_reconnects = Counter(
            "obstop_mqtt_reconnects",
            "Connections to the MQTT broker after the first (each one a loss)",
            registry=r,
        )
        self.api_seconds = Histogram(
            "obstop_api_request_duration_seconds",
            "API answers by method, route template and status",
            ["method", "route", "status"],
            buckets=FAST_BUCKETS,
            registry=r,
        )
        for status in TaskStatus:
            self.tasks.labels(str(status))
        self._connections = 0

    # --- the hooks -------------------------------------------------------------------------------

    def set_tasks(self, counts: Mapping[str, int]) -> None:
        for status in TaskStatus:
            self.tasks.labels(str(status)).set(counts.get(str(status), 0))

    def subtask_finished(self, name: str, ok: bool, seconds: float) -> None:
        self.subtask_seconds.labels(name, "ok" if ok else "failed").observe(seconds)

    def agent_presence(self, agent: str, online: bool) -> None:
        self.agent_up.labels(agent).set(1 if online else 0)

    def command_answered(self, kind: str, outcome: str, seconds: float) -> None:
        self.command_seconds.labels(kind, outcome).observe(seconds)

    def mqtt_connected(self) -> None:
        if self.mqtt_connections._value.get() > 0:
            self.mqtt_reconnects.inc()
        self.mqtt_connections.inc()


NULL = Metrics()  # for components built without one (tests, tools): counted, never exposed


class ApiMetrics:
    """ASGI middleware: each answer's latency by method, route template (`/api/v2/tasks/instances/{id}`,
    never the ids themselves) and status. Outermost: refusals at the gate count too."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.monotonic()
        status = 500

        async def send_seen(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_seen)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unrouted"
            self.metrics.api_seconds.labels(scope["method"], template, str(status)).observe(
                time.monotonic() - started
            )
