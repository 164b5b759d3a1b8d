"""What the steps of a partial stop or start do (one zone, or one server), forward and rolling back; the
process steps and the per-server status steps are the whole-cluster ones (stop.py, start.py, rollback.py).

The first subtask of a stop runs the majority check before anything is touched (majority.py): a refusal
names each tenant and log stream that would lose its majority, and `force` never skips it. Then the
minor freeze of the servers being stopped (unless `freeze: false`), STOP ZONE/SERVER in SQL (the check
again first: a retry may come much later), the processes, the statuses. A start launches the processes,
then START ZONE/SERVER once they answer. While a zone or server is down the cluster stays RUNNING.

Each SQL action records what the cluster said before it, so a rollback undoes only what this task did:
START only what was not stopped in the cluster before it, STOP again only what it started.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from obstop.controller.config import ClusterSQLConfig
from obstop.controller.errors import StepFailed
from obstop.controller.states.cluster import ClusterStatus, of_servers
from obstop.controller.states.intent import Partial
from obstop.controller.states.server import ServerStatus
from obstop.controller.states.zone import ZoneStatus
from obstop.controller.steps import majority
from obstop.controller.steps import service_sql as ssql
from obstop.controller.steps.cluster_sql import ClusterSQL, SQLFailed, SQLUnavailable
from obstop.controller.steps.dag import Node, Step
from obstop.controller.steps.freeze import Preparation
from obstop.controller.steps.run import ServerFacts, StepRun

SQL_MARGIN = 30  # seconds a service step gets beyond service_timeout (connects, the checks)


@dataclass(frozen=True)
class Scope:
    """What a partial task acts on: a zone and all its servers, or one server."""

    kind: Partial
    zone: str
    servers: tuple[ServerFacts, ...]

    @property
    def is_zone(self) -> bool:
        return self.kind in (Partial.STOP_ZONE, Partial.START_ZONE)

    @property
    def keys(self) -> set[str]:
        return {s.key for s in self.servers}

    def __str__(self) -> str:
        return f"zone {self.zone}" if self.is_zone else f"server {self.servers[0].key}"

    def statement(self, verb: str, force: bool = False) -> str:
        target = ssql.literal(self.zone if self.is_zone else self.servers[0].key)
        what = "ZONE" if self.is_zone else "SERVER"
        return f"ALTER SYSTEM {'FORCE ' if force else ''}{verb} {what} {target}"


def scope(run: StepRun) -> Scope:
    kind = Partial(run.task_string("partial") or "")
    zone = str(run.task_string("zone_name"))
    if kind in (Partial.STOP_ZONE, Partial.START_ZONE):
        servers = tuple(s for s in run.servers.values() if s.zone == zone)
    else:
        servers = (run.server(int(run.task_string("server_id") or 0)),)
    return Scope(kind, zone, servers)


class PartialSteps:
    def __init__(self, cluster_sql: Sequence[ClusterSQLConfig], preparation: Preparation) -> None:
        self.sql = {c.cluster_id: c for c in cluster_sql}
        self.preparation = preparation

    async def run(self, run: StepRun) -> str:
        try:
            match Step(run.step):
                case Step.PREPARE_ZONE_STOP | Step.PREPARE_SERVER_STOP:
                    return await self._prepare_stop(run)
                case Step.STOP_ZONE_SERVICE | Step.STOP_SERVER_SERVICE:
                    return await self._stop_service(run)
                case Step.START_ZONE_SERVICE | Step.START_SERVER_SERVICE:
                    return await self._start_service(run)
                case Step.PARTIAL_ZONE:
                    return await self._update_zone(run)
                case Step.PARTIAL_CLUSTER:
                    return await self._update_cluster(run)
        except SQLUnavailable as exc:
            raise StepFailed(f"{exc.message}; nothing was changed in the cluster") from exc
        except SQLFailed as exc:
            raise StepFailed(exc.message) from exc
        raise StepFailed(f"no partial step {run.step}")

    async def rollback(self, run: StepRun) -> str:
        try:
            match Step(run.step):
                case Step.PREPARE_ZONE_STOP:
                    return await self._zone_back(run)
                case Step.STOP_ZONE_SERVICE | Step.STOP_SERVER_SERVICE:
                    return await self._undo_stop_service(run)
                case Step.START_ZONE_SERVICE | Step.START_SERVER_SERVICE:
                    return await self._undo_start_service(run)
        except SQLUnavailable as exc:
            raise StepFailed(f"{exc.message}; its rollback can be retried, or skipped") from exc
        except SQLFailed as exc:
            raise StepFailed(f"{exc.message}; its rollback can be retried, or skipped") from exc
        return "nothing to undo here (statuses go back with the stages before it)"

    # --- SQL --------------------------------------------------------------------------------------------

    def _config(self, run: StepRun, what: str) -> ClusterSQLConfig:
        cfg = self.sql.get(run.cluster_id)
        if cfg is None:
            raise StepFailed(
                f"{what} needs [[cluster_sql]] credentials for cluster {run.cluster_id} (the majority check "
                "reads GV$OB_LOG_STAT); nothing was touched"
            )
        return cfg

    async def _connect(self, run: StepRun, sc: Scope, what: str) -> ClusterSQL:
        """A connection through the servers that stay up first (RUNNING first), those of the scope last."""
        cfg = self._config(run, what)
        statuses = await run.sink.server_statuses(run.cluster_id)
        ordered = sorted(
            run.servers.values(),
            key=lambda s: (s.key in sc.keys, statuses.get(s.id) != ServerStatus.RUNNING, s.id),
        )
        return ClusterSQL(cfg, [(s.ip, s.sql_port) for s in ordered], run.log)

    async def _check(self, run: StepRun, sql: ClusterSQL, sc: Scope) -> majority.Verdict:
        """The majority check: StepFailed naming what would lose its majority, before anything is done."""
        statuses = await run.sink.server_statuses(run.cluster_id)
        stopped = {s.key for s in run.servers.values() if statuses.get(s.id) == ServerStatus.PROCESS_STOPPED}
        try:
            replicas, tenants = await majority.read(sql)
        except SQLFailed as exc:
            raise StepFailed(f"majority check failed: {exc.message}; nothing was touched") from exc
        if not replicas:
            raise StepFailed(
                "GV$OB_LOG_STAT lists no log stream: the majority cannot be checked; nothing was touched"
            )
        verdict = majority.evaluate(replicas, sc.keys, stopped, tenants)
        if verdict.losses:
            force = " (force does not skip this check)" if run.options.force else ""
            raise StepFailed(f"{verdict.refusal(f'stopping {sc}')}; nothing was touched{force}")
        await run.log(
            f"majority check: {verdict.checked} log stream(s) have a replica on {sc}; each keeps a "
            "majority in sync without it"
        )
        return verdict

    # --- forward ----------------------------------------------------------------------------------------

    async def _prepare_stop(self, run: StepRun) -> str:
        sc = scope(run)
        async with await self._connect(run, sc, f"stopping {sc}") as sql:
            verdict = await self._check(run, sql, sc)
            try:
                before = await self._service_state(sql, sc)
            except SQLFailed as exc:
                raise StepFailed(f"reading {sc} in the cluster: {exc.message}; nothing was touched") from exc
        # the minor freeze of these servers (the task's server_ids); each waits in its Prepare stop observer
        await self.preparation.prepare_cluster(run)
        # committed before STOP is sent: a rollback starts in the cluster only what was serving before
        run.record(majority={"checked": verdict.checked}, service_before={"stopped": before})
        if not sc.is_zone:
            return f"{sc} may stop: every log stream keeps its majority"
        if run.ctx("former_zone_status") == ZoneStatus.STOPPED:
            return f"zone {sc.zone} is already {ZoneStatus.STOPPED}"
        run.move("zone", run.zone_id(sc.zone), ZoneStatus.STOPPING)
        return f"zone {sc.zone} -> {ZoneStatus.STOPPING}"

    def _timeout(self, run: StepRun) -> float:
        cfg = self.sql.get(run.cluster_id)
        return cfg.service_timeout if cfg is not None else 600.0

    async def _stop_service(self, run: StepRun) -> str:
        sc = scope(run)
        force = run.options.force
        timeout = self._timeout(run)
        started = time.monotonic()
        statement = sc.statement("STOP", force)
        async with await self._connect(run, sc, f"stopping {sc}") as sql:
            await self._check(run, sql, sc)  # again: a retry or a resume may come long after the first
            run.record(service={"stop_sent": True})
            try:
                await ssql.alter(sql, statement, timeout)
            except SQLFailed as exc:
                raise StepFailed(
                    f"{sc} not stopped in the cluster: {exc.message}; no process was touched"
                ) from exc
            if force:
                await run.log("force: not waiting for the leaders to move away")
                return f"{sc} stopped in the cluster (FORCE)"

            async def leaders_left() -> str | None:
                left = await ssql.leaders_on(sql, sc.keys)
                return ssql.describe_leaders(left) if left else None

            remaining = max(1.0, timeout - (time.monotonic() - started))
            took = await ssql.wait_until(leaders_left, remaining, run.log, f"no leader is left on {sc}")
        return f"{sc} stopped in the cluster: no log stream leader left on it after {took * 1000:.0f} ms"

    async def _service_state(self, sql: ClusterSQL, sc: Scope) -> bool | None:
        """Whether the cluster has the zone or server stopped (INACTIVE, STOP_TIME > 0); None: unlisted."""
        if sc.is_zone:
            status = await ssql.zone_status(sql, sc.zone)
            return None if status is None else status != "ACTIVE"
        stop_time = await ssql.server_stop_time(sql, sc.servers[0].key)
        return None if stop_time is None else stop_time > 0

    async def _start_service(self, run: StepRun) -> str:
        sc = scope(run)
        timeout = self._timeout(run)
        statement = sc.statement("START")
        async with await self._connect(run, sc, f"starting {sc}") as sql:
            # what a rollback restores (a resume after a crash reads it after its own START: then it finds
            # the zone serving, and a rollback leaves it serving, the side that loses no majority)
            before = (run.previous or {}).get("service", {}).get("stopped_before")
            if before is None:
                before = await self._service_state(sql, sc)
            run.record(service={"stopped_before": before, "start_sent": True})
            try:
                await ssql.alter(sql, statement, timeout)
            except SQLFailed as exc:
                raise StepFailed(f"{sc} not started in the cluster: {exc.message}") from exc

            async def still_stopped() -> str | None:
                return f"the cluster still has {sc} stopped" if await self._service_state(sql, sc) else None

            took = await ssql.wait_until(still_stopped, timeout, run.log, f"{sc} serves again")
        return f"{sc} serves again in the cluster after {took * 1000:.0f} ms"

    async def _update_zone(self, run: StepRun) -> str:
        """A server's zone: RUNNING or STOPPED when all its servers are; else as it was (RUNNING around
        one server stopped on purpose), or UNAVAILABLE."""
        zone = str(run.ctx("zone_name"))
        statuses = await run.sink.server_statuses(run.cluster_id)
        found = of_servers(statuses.get(s.id, "") for s in run.servers.values() if s.zone == zone)
        former = run.ctx("former_zone_status")
        wanted = str(found)
        if found is ClusterStatus.UNAVAILABLE and former == ZoneStatus.RUNNING:
            wanted = ZoneStatus.RUNNING
        run.move("zone", run.zone_id(zone), wanted)
        return f"zone {zone} -> {wanted}"

    async def _update_cluster(self, run: StepRun) -> str:
        """RUNNING when every server runs; else as it was before the task (RUNNING around a zone or server
        stopped on purpose): the rest of the cluster is not this task's doing."""
        statuses = await run.sink.server_statuses(run.cluster_id)
        if all(statuses.get(s) == ServerStatus.RUNNING for s in run.servers):
            wanted = str(ClusterStatus.RUNNING)
        else:
            wanted = str(run.task_string("former_cluster_status") or ClusterStatus.UNAVAILABLE)
        run.move("cluster", run.cluster_id, wanted)
        return f"cluster {run.cluster_id} -> {wanted}"

    # --- rolling back -----------------------------------------------------------------------------------

    async def _zone_back(self, run: StepRun) -> str:
        """The zone back to its status before the task, when its servers agree; else what they say."""
        zone = str(run.ctx("zone_name"))
        former = run.ctx("former_zone_status")
        statuses = await run.sink.server_statuses(run.cluster_id)
        now = str(of_servers(statuses.get(s.id, "") for s in run.servers.values() if s.zone == zone))
        wanted = str(former) if former is not None and str(former) == now else now
        run.move("zone", run.zone_id(zone), wanted)
        return f"zone {zone} -> {wanted}" + (" (its status before this task)" if wanted == former else "")

    async def _undo_stop_service(self, run: StepRun) -> str:
        sc = scope(run)
        prepared = await run.sink.node_result(run.task_id, Node.PREPARE_CLUSTER) or {}
        if (prepared.get("service_before") or {}).get("stopped"):
            return f"{sc} was already stopped in the cluster before this task: left so"
        statement = sc.statement("START")
        async with await self._connect(run, sc, f"starting {sc} again") as sql:
            if not await self._service_state(sql, sc):
                return f"the cluster does not have {sc} stopped: nothing to undo"
            await ssql.alter(sql, statement, self._timeout(run))
        return f"{sc} serves again in the cluster ({statement})"

    async def _undo_start_service(self, run: StepRun) -> str:
        sc = scope(run)
        service = (run.previous or {}).get("service") or {}
        if not service.get("start_sent") or not service.get("stopped_before"):
            return f"{sc} was not stopped in the cluster before this task: left serving"
        statement = sc.statement("STOP")
        async with await self._connect(run, sc, f"stopping {sc} again") as sql:
            if await self._service_state(sql, sc):
                return f"the cluster has {sc} stopped already: nothing to undo"
            await self._check(run, sql, sc)
            await ssql.alter(sql, statement, self._timeout(run))
        return f"{sc} stopped in the cluster again, as before this task ({statement})"
