"""Graceful in SQL: a minor freeze before any process is touched, and a bounded wait for each server's
checkpoint to move past where it was, so the restart replays little log.

observer turns SIGTERM into SIGKILL, so this is the whole of a graceful stop. "Prepare stop cluster"
reads every target server's minimum checkpoint_scn (one statement) and issues `ALTER SYSTEM MINOR FREEZE
SERVER=(...)`; each server's "Prepare stop observer" then waits (polling quickly at first, backing off)
until its checkpoint has grown, through its cluster's one pooled session and poll (checkpoints.py); the
Wait node after them starts the kills only when every wait is over. Skippable with `freeze: false`; an
unreachable cluster stops processes only with `force: true`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, Protocol

from obstop.controller.config import ClusterSQLConfig
from obstop.controller.errors import StepFailed
from obstop.controller.states.server import ServerStatus
from obstop.controller.steps.checkpoints import CheckpointPoller, Waiter, read_checkpoints
from obstop.controller.steps.cluster_sql import ClusterSQL, SQLFailed, SQLUnavailable
from obstop.controller.steps.dag import Node
from obstop.controller.steps.run import ServerFacts, StepRun

RECORDS_KEPT = 64  # tasks whose freeze record is kept in memory


class Preparation(Protocol):
    """The seam for graceful cluster-level preparation (minor freeze, checkpoint wait) before kills."""

    async def prepare_cluster(self, run: StepRun) -> None: ...

    async def prepare_server(self, run: StepRun, server: ServerFacts) -> None: ...


class SQLPreparation:
    def __init__(self, cluster_sql: Sequence[ClusterSQLConfig]) -> None:
        self.sql = {c.cluster_id: c for c in cluster_sql}
        self.poller = CheckpointPoller()
        self._records: dict[int, dict[str, Any]] = {}  # task id -> its freeze record (started)
        self._records_lock = asyncio.Lock()
        self._expect: dict[int, frozenset[str]] = {}  # task id -> the servers its freeze waits for

    async def run(self, stopping: asyncio.Event) -> None:
        """The clusters' checkpoint loops (a task of the controller's TaskGroup) until stopping is set."""
        await self.poller.run(stopping)

    async def _endpoints(self, run: StepRun, first: ServerFacts | None = None) -> list[tuple[str, int]]:
        statuses = await run.sink.server_statuses(run.cluster_id)
        # RUNNING servers first, then those this stop is preparing (alive until the kills, which wait
        # for every checkpoint wait); the server being prepared first of all (its own view is freshest)
        rank: dict[str | None, int] = {ServerStatus.RUNNING: 0, ServerStatus.PROCESS_STOPPING: 1}
        ordered = sorted(
            run.servers.values(),
            key=lambda s: (first is None or s.id != first.id, rank.get(statuses.get(s.id), 2), s.id),
        )
        return [(s.ip, s.sql_port) for s in ordered]

    def _config(self, run: StepRun) -> ClusterSQLConfig | None:
        return self.sql.get(run.cluster_id)

    async def prepare_cluster(self, run: StepRun) -> None:
        if not run.options.freeze:
            await run.log("minor freeze skipped: the stop request said freeze: false")
            return
        cfg = self._config(run)
        if cfg is None:
            await run.log(
                f"minor freeze skipped: no [[cluster_sql]] credentials for cluster {run.cluster_id}"
            )
            return
        force = run.options.force
        timeout_s = run.options.freeze_timeout_seconds
        wanted = set(run.task_context.get("listMap", {}).get("server_ids", []))
        stopped = {
            i for i, st in (await run.sink.server_statuses(run.cluster_id)).items() if st == "PROCESS_STOPPED"
        }
        # a server already stopped (a cluster partly stopped before) has nothing to flush
        targets = [s for s in run.servers.values() if s.id in wanted and s.id not in stopped]
        try:
            async with ClusterSQL(cfg, await self._endpoints(run), run.log) as sql:
                await sql.execute(f"SET ob_query_timeout = {int(cfg.statement_timeout * 1_000_000)}")
                # a checkpoint of 0: no log stream has checkpointed yet, nothing to wait for (as before)
                read = await read_checkpoints(sql, [(s.ip, s.rpc_port) for s in targets])
                before = {key: scn or None for key, scn in read.items()}
                names = ", ".join(f"'{key}'" for key in before)
                if names:
                    await sql.execute(f"ALTER SYSTEM MINOR FREEZE SERVER = ({names})")
        except SQLUnavailable as exc:
            if not force:
                raise StepFailed(
                    f"{exc.message}. No process was touched; stop with force: true to stop the "
                    "processes without the minor freeze"
                ) from exc
            await run.log(f"{exc.message}; force: true, so the processes will be stopped without a freeze")
            run.result = {"freeze": {"started": False, "reason": exc.message}}
            return
        except SQLFailed as exc:
            raise StepFailed(f"minor freeze failed: {exc.message}. No process was touched") from exc
        run.result = {"freeze": {"started": True, "before": before, "timeout_seconds": timeout_s}}
        await run.log(
            f"minor freeze issued for {len(before)} server(s); each waits up to {timeout_s}s "
            "for its checkpoint in its Prepare stop observer"
        )

    async def prepare_server(self, run: StepRun, server: ServerFacts) -> None:
        if not run.options.freeze or self._config(run) is None:
            return  # no freeze was issued (prepare_cluster said why in its log)
        freeze = await self._freeze_record(run)
        if not freeze or not freeze.get("started"):
            return
        key = f"{server.ip}:{server.rpc_port}"
        before = freeze["before"].get(key)
        if before is None:
            await run.log(f"{key} had no log stream before the freeze: no checkpoint to wait for")
            return
        cfg = self._config(run)
        assert cfg is not None  # the freeze was issued with it
        timeout_s = float(freeze.get("timeout_seconds", run.options.freeze_timeout_seconds))
        try:
            if run.run_time > 1:
                # a retry: the first freeze may be lost (that is often why this failed), so this
                # server's is issued again and waited for from where its checkpoint is now
                async with ClusterSQL(cfg, await self._endpoints(run, server), run.log) as sql:
                    before = await self._refreeze(sql, run, server, int(before))
            await run.log(f"waiting for the checkpoint of {key} to pass {before} (at most {timeout_s:g}s)")
            # the first run's waits come together: the session stays until all have ended
            expect = self._expected(run.task_id, freeze) if run.run_time == 1 else frozenset()
            waiter = Waiter(server.ip, server.rpc_port, int(before), timeout_s, run.log, expect)
            await self.poller.wait(run.cluster_id, cfg, lambda: self._endpoints(run), waiter)
        except SQLUnavailable as exc:
            if not run.options.force:
                raise StepFailed(f"waiting for the freeze of {key}: {exc.message}") from exc
            await run.log(f"{exc.message}; force: true, so not waiting for the freeze of {key}")

    def _expected(self, task_id: int, freeze: dict[str, Any]) -> frozenset[str]:
        """The servers that wait for this task's freeze (those with a checkpoint before it)."""
        found = self._expect.get(task_id)
        if found is None:
            found = frozenset(k for k, v in freeze.get("before", {}).items() if v is not None)
            self._expect[task_id] = found
            while len(self._expect) > RECORDS_KEPT:
                del self._expect[next(iter(self._expect))]
        return found

    async def _freeze_record(self, run: StepRun) -> dict[str, Any] | None:
        """What Prepare stop cluster recorded of the freeze, read once per task for all its servers (a
        thousand servers' waits begin together; the record, with every server's checkpoint, is fixed
        once the freeze was issued: a successful subtask never runs again)."""
        if (found := self._records.get(run.task_id)) is not None:
            return found
        async with self._records_lock:
            if (found := self._records.get(run.task_id)) is not None:
                return found
            result = await run.sink.node_result(run.task_id, Node.PREPARE_CLUSTER)
            freeze: dict[str, Any] | None = (result or {}).get("freeze")
            if freeze and freeze.get("started"):
                self._records[run.task_id] = freeze
                while len(self._records) > RECORDS_KEPT:
                    del self._records[next(iter(self._records))]
            return freeze

    async def _refreeze(self, sql: ClusterSQL, run: StepRun, server: ServerFacts, before: int) -> int:
        key = f"{server.ip}:{server.rpc_port}"
        cfg = self._config(run)
        assert cfg is not None
        try:
            await sql.execute(f"SET ob_query_timeout = {int(cfg.statement_timeout * 1_000_000)}")
            now_at = (await read_checkpoints(sql, [(server.ip, server.rpc_port)])).get(key) or before
            await run.log(f"run {run.run_time}: issuing the minor freeze of {key} again")
            await sql.execute(f"ALTER SYSTEM MINOR FREEZE SERVER = ('{key}')")
        except SQLFailed as exc:
            raise StepFailed(
                f"minor freeze of {key} failed again: {exc.message}. No process was touched"
            ) from exc
        return now_at
