"""A plan (dry run): an operation's DAG and every check it would meet, without acting on anything.

Nothing here signals, launches, freezes or moves a status: probes are read-only commands (signed, over
MQTT, or the agent's own probe run agentless), SQL only reads the checkpoints the freeze would wait for.
The answer says, per server, what would happen and what would block it, and what blocks the whole.

Each operation is a `PlanSpec`: its task name, the cluster statuses it needs, and the checks it
contributes. The checks are small functions over a `Planning` (the facts, and where findings go); an
operation that needs another check adds a function to its spec's checks, as a zone or server stop adds
its majority check:

    PARTIAL_STOP_CHECKS = (*STOP_CLUSTER_CHECKS, majority_kept)

controller/engine/operations.py names the spec of each operation, beside the DAG it builds: the service
plans exactly what it would create.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import Callable, Collection, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any

from obstop.agent.errors import ExecutorError
from obstop.agent.protocol import ObserverState, ProbeReport
from obstop.controller.config import ClusterSQLConfig, StopConfig
from obstop.controller.dispatch import Router
from obstop.controller.errors import ControllerError
from obstop.controller.states.server import ServerStatus
from obstop.controller.steps import majority
from obstop.controller.steps.checkpoints import read_checkpoints
from obstop.controller.steps.cluster_sql import ClusterSQL
from obstop.controller.steps.dag import NodeSpec
from obstop.controller.steps.process import target
from obstop.controller.steps.run import ServerFacts, TaskOptions

NO_RESULT = re.compile(r"^no result for command \S+ from agent \S+: ")
PROBE_TIMEOUT = 5.0  # seconds an agent has to answer a plan's probe (an offline one is named, not awaited)


@dataclass(frozen=True)
class ClusterFacts:
    id: int
    name: str
    status: str
    held_by: str | None  # "task 7 (Stop OB cluster, RUNNING)" when a task holds the cluster


@dataclass
class ServerPlan:
    """What would happen to one server, and what would block it."""

    facts: ServerFacts
    status: str
    action: str = ""
    observed: str = ""
    blockers: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def view(self) -> dict[str, Any]:
        f = self.facts
        return {
            "id": f.id,
            "zone": f.zone,
            "host": f.host,
            "address": f"{f.ip}:{f.rpc_port}",
            "sqlPort": f.sql_port,
            "homePath": f.home_path,
            "status": self.status,
            "observed": self.observed,
            "action": self.action,
            "blocked": bool(self.blockers),
            "blockers": self.blockers,
            "notes": self.notes,
        }


@dataclass
class Planning:
    """One plan being made: the facts the checks read, and where they put what they find."""

    spec: PlanSpec
    cluster: ClusterFacts
    zones: dict[str, str]  # name -> status
    servers: dict[int, ServerPlan]  # the servers the operation acts on
    everyone: Sequence[tuple[ServerFacts, str]]  # every server of the cluster, with its status
    subject: str  # what the operation acts on, in words ("zone zone1")
    options: TaskOptions
    nodes: Sequence[NodeSpec]
    router: Router
    sql: ClusterSQLConfig | None
    stop_config: StopConfig
    probe_timeout: float = PROBE_TIMEOUT
    blockers: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    probes: dict[int, ProbeReport] = field(default_factory=dict)
    plan_id: str = field(default_factory=lambda: uuid.uuid4().hex[:16])

    def block(self, server_id: int | None, reason: str) -> None:
        if server_id is None:
            self.blockers.append(reason)
        else:
            self.servers[server_id].blockers.append(reason)

    def note(self, server_id: int | None, line: str) -> None:
        if server_id is None:
            self.notes.append(line)
        else:
            self.servers[server_id].notes.append(line)

    async def probe(self, srv: ServerFacts) -> ProbeReport | None:
        """The server's observer, probed (read-only) through whatever serves its host; None (and a
        blocker naming why) when no answer came."""
        if srv.id in self.probes:
            return self.probes[srv.id]
        command_id = f"plan-{self.plan_id}-s{srv.id}.probe"

        async def ignore(_line: str) -> None:
            return None

        try:
            dispatcher = self.router.for_host(srv.host)
            report = await dispatcher.probe(
                command_id, target(srv), ignore, time.monotonic() + self.probe_timeout
            )
        except ControllerError as exc:
            # "no result for command plan-...probe from agent h2: agent h2 offline since ...": the why
            self.block(srv.id, "no probe answered: " + NO_RESULT.sub("", exc.message))
            return None
        except (ExecutorError, OSError, TimeoutError) as exc:
            self.block(srv.id, f"no probe answered: {exc or type(exc).__name__}")
            return None
        self.probes[srv.id] = report
        return report

    def view(self) -> dict[str, Any]:
        servers = [s.view() for s in self.servers.values()]
        every = self.blockers + [
            f"server {s['id']} ({s['address']}): {b}" for s in servers for b in s["blockers"]
        ]
        return {
            "dryRun": True,
            "operation": self.spec.task_name,
            "executable": not every,
            "cluster": {
                "id": self.cluster.id,
                "name": self.cluster.name,
                "status": self.cluster.status,
                "heldBy": self.cluster.held_by,
            },
            "options": self.options.strings() if self.spec.verb == "stop" else {},
            "blockers": every,
            "notes": self.notes,
            "servers": servers,
            "tasks": [
                {"node": n.node, "name": n.name, "upstreams": list(n.upstreams), "timeout": n.timeout}
                for n in self.nodes
            ],
        }


Check = Callable[[Planning], Coroutine[Any, Any, None]]


@dataclass(frozen=True)
class PlanSpec:
    """An operation as a plan sees it: the task it would create, the statuses it needs, its checks."""

    task_name: str
    verb: str  # "stop" | "start": what happens to each server
    require: frozenset[str]  # cluster statuses the operation needs
    checks: tuple[Check, ...]


# --- the checks ---------------------------------------------------------------------------------


async def lock_free(p: Planning) -> None:
    """One operation per cluster: a task holding it blocks the operation."""
    if p.cluster.held_by is not None:
        p.block(None, f"cluster {p.cluster.id} is held by {p.cluster.held_by}: wait for it, or cancel it")


async def status_allows(p: Planning) -> None:
    if p.cluster.status not in p.spec.require:
        p.block(
            None,
            f"cluster {p.cluster.id} ({p.cluster.name}) is {p.cluster.status}, and {p.spec.task_name} "
            f"needs it {' or '.join(sorted(p.spec.require))}",
        )


def _describe(report: ProbeReport) -> str:
    out = str(report.state)
    if report.pid:
        out += f" pid {report.pid}"
    if report.ports_held:
        out += f", listening on {', '.join(str(x) for x in report.ports_held)}"
    if report.stale_pid_file:
        out += " (stale pid file)"
    return out


async def stop_probes(p: Planning) -> None:
    """Each observer's identity proved, through its agent (online, answering a signed probe)."""

    async def one(sp: ServerPlan) -> None:
        report = await p.probe(sp.facts)
        if report is None:
            sp.action = "blocked"
            return
        sp.observed = _describe(report)
        if report.state is ObserverState.REFUSED:
            sp.action = "blocked: nothing would be signalled"
            p.block(sp.facts.id, f"identity not proved: {report.reason}")
        elif report.state is ObserverState.STOPPED:
            sp.action = "none: already stopped" + (
                ", its stale pid file removed" if report.stale_pid_file else ""
            )
        else:
            sp.action = (
                f"stop pid {report.pid} with {p.stop_config.signal} "
                f"(SIGKILL after {p.stop_config.term_timeout:g}s)"
            )
            if sp.status not in (ServerStatus.RUNNING, ServerStatus.UNAVAILABLE):
                p.note(sp.facts.id, f"its status says {sp.status}, but its observer runs")

    async with asyncio.TaskGroup() as tg:
        for sp in p.servers.values():
            tg.create_task(one(sp))


async def start_probes(p: Planning) -> None:
    """Each observer probed: a stopped one would be launched, a running one left alone, an unproven one
    blocks (a start never launches beside a process it cannot account for)."""

    async def one(sp: ServerPlan) -> None:
        report = await p.probe(sp.facts)
        if report is None:
            sp.action = "blocked"
            return
        sp.observed = _describe(report)
        if report.state is ObserverState.REFUSED:
            sp.action = "blocked: nothing would be launched"
            p.block(sp.facts.id, f"identity not proved: {report.reason}")
        elif report.state is ObserverState.RUNNING:
            sp.action = f"none: already running (pid {report.pid})"
        else:
            sp.action = f"start: cd {sp.facts.home_path} && ./bin/observer, then wait until it listens"

    async with asyncio.TaskGroup() as tg:
        for sp in p.servers.values():
            tg.create_task(one(sp))


async def freeze_possible(p: Planning) -> None:
    """The cluster's SQL reachable with the credentials and each server's checkpoint readable: what the
    minor freeze would wait on. The freeze itself is never issued."""
    if not p.options.freeze:
        p.note(None, "minor freeze: skipped (freeze: false)")
        return
    if p.sql is None:
        p.note(None, f"minor freeze: skipped (no [[cluster_sql]] credentials for cluster {p.cluster.id})")
        return
    lines: list[str] = []

    async def log(line: str) -> None:
        lines.append(line)

    running = sorted(p.servers.values(), key=lambda s: (s.status != ServerStatus.RUNNING, s.facts.id))
    endpoints = [(s.facts.ip, s.facts.sql_port) for s in running]
    try:
        async with ClusterSQL(p.sql, endpoints, log) as sql:
            found = await read_checkpoints(
                sql, [(sp.facts.ip, sp.facts.rpc_port) for sp in p.servers.values()], quiet=True
            )
            for sp in p.servers.values():
                at = found[sp.facts.key]
                sp.notes.append(
                    f"checkpoint_scn {at}: the freeze would wait for it to advance"
                    if at is not None
                    else "no log stream: no checkpoint to wait for"
                )
    except ControllerError as exc:
        if p.options.force:
            p.note(
                None,
                f"minor freeze: impossible ({exc.message}); force: true, so processes would be stopped "
                "without it",
            )
        else:
            p.block(None, f"minor freeze impossible: {exc.message} (force: true stops without it)")
        return
    connected = next((x for x in lines if x.startswith("SQL connected")), "SQL connected")
    p.note(
        None,
        f"minor freeze: possible ({connected}); each server would wait up to "
        f"{p.options.freeze_timeout_seconds}s for its checkpoint",
    )


async def majority_kept(p: Planning) -> None:
    """A partial stop's first check, as its first subtask runs it: every log stream with a replica on the
    servers to stop keeps a majority in sync without them (force never skips it)."""
    if p.sql is None:
        p.block(None, f"the majority check needs [[cluster_sql]] credentials for cluster {p.cluster.id}")
        return
    stopping = {sp.facts.key for sp in p.servers.values()}
    stopped = {f.key for f, status in p.everyone if status == ServerStatus.PROCESS_STOPPED}
    # asked of the servers that stay up, running ones first
    staying = sorted(
        (x for x in p.everyone if x[0].key not in stopping),
        key=lambda x: (x[1] != ServerStatus.RUNNING, x[0].id),
    )

    async def quiet(_line: str) -> None:
        return None

    try:
        async with ClusterSQL(p.sql, [(f.ip, f.sql_port) for f, _ in staying], quiet) as sql:
            replicas, tenants = await majority.read(sql)
    except ControllerError as exc:
        p.block(None, f"the majority check cannot be made: {exc.message}")
        return
    if not replicas:
        p.block(None, "GV$OB_LOG_STAT lists no log stream: the majority cannot be checked")
        return
    verdict = majority.evaluate(replicas, stopping, stopped, tenants)
    if verdict.losses:
        p.block(None, verdict.refusal(f"stopping {p.subject}"))
    else:
        p.note(
            None,
            f"majority check: {verdict.checked} log stream(s) keep a majority in sync without {p.subject}",
        )


STOP_CLUSTER_CHECKS: tuple[Check, ...] = (lock_free, status_allows, stop_probes, freeze_possible)
START_CLUSTER_CHECKS: tuple[Check, ...] = (lock_free, status_allows, start_probes)
PARTIAL_STOP_CHECKS: tuple[Check, ...] = (*STOP_CLUSTER_CHECKS, majority_kept)


class Planner:
    """Makes plans: the checks of a spec, run together, over the facts the service read."""

    def __init__(
        self,
        router: Router,
        cluster_sql: Sequence[ClusterSQLConfig],
        stop_config: StopConfig,
        probe_timeout: float = PROBE_TIMEOUT,
    ) -> None:
        self.router = router
        self.sql = {c.cluster_id: c for c in cluster_sql}
        self.stop_config = stop_config
        self.probe_timeout = probe_timeout

    async def plan(
        self,
        spec: PlanSpec,
        cluster: ClusterFacts,
        zones: dict[str, str],
        everyone: Sequence[tuple[ServerFacts, str]],
        nodes: Sequence[NodeSpec],
        options: TaskOptions | None = None,
        *,
        acting_on: Collection[int] | None = None,
        subject: str = "",
    ) -> dict[str, Any]:
        """The plan's view (what the API answers): every check run, nothing acted on. everyone: every
        server of the cluster; acting_on: the ids of those the operation acts on (None: all)."""
        p = Planning(
            spec=spec,
            cluster=cluster,
            zones=zones,
            servers={
                f.id: ServerPlan(f, status)
                for f, status in everyone
                if acting_on is None or f.id in acting_on
            },
            everyone=everyone,
            subject=subject or f"cluster {cluster.name}",
            options=options or TaskOptions(),
            nodes=nodes,
            router=self.router,
            sql=self.sql.get(cluster.id),
            stop_config=self.stop_config,
            probe_timeout=self.probe_timeout,
        )
        async with asyncio.TaskGroup() as tg:
            for check in spec.checks:
                tg.create_task(check(p), name=f"plan-{check.__name__}")
        return p.view()
