"""Statuses that follow reality: the observers' state, as the agents (and, for agentless hosts, the
controller itself) see it, reconciled into server, zone and cluster statuses whenever no task holds the
cluster. An observer started or killed outside obstop shows within a report; a cluster whose task has
ended is settled at once (nothing left STOPPING or STARTING) and then shows what fresh probes find.

Reports of a cluster's observers taken before its task ended could predate the task's last act: they are
dropped, and fresh ones asked for (`Router.refresh`), so a settled cluster is never set back by old news.

Zones and servers a partial stop took down on purpose are left out of their cluster's status (it stays
RUNNING around them, as OCP shows it), never an observer that died on its own: the store reads them from
the tasks that ended (store/intents.py, states/intent.py) in the same transaction as the reconciliation.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from obstop.agent.protocol import ObserverState, ObserverStatus, ObserverTarget
from obstop.controller.dispatch import Router, WatchPlan
from obstop.controller.states.server import ServerStatus
from obstop.controller.store import Store
from obstop.controller.store.db import store_cause, store_failure

log = logging.getLogger("obstop.reconcile")


def server_status(o: ObserverStatus) -> ServerStatus:
    """What an observer's state means for its server: running and listening, stopped, or neither."""
    if o.state is ObserverState.RUNNING:
        return ServerStatus.RUNNING if o.listening else ServerStatus.UNAVAILABLE
    if o.state is ObserverState.STOPPED:
        return ServerStatus.PROCESS_STOPPED
    return ServerStatus.UNAVAILABLE


class Reconciler:
    def __init__(
        self,
        store: Store,
        router: Router,
        *,
        probe_interval: float = 5.0,
        report_interval: float = 30.0,
        debounce: float = 0.05,
    ) -> None:
        self.store = store
        self.router = router
        self.probe_interval = probe_interval
        self.report_interval = report_interval
        self.debounce = debounce
        self._servers: dict[tuple[str, str], int] = {}  # (host, home path) -> server id
        self._clusters: dict[int, list[int]] = {}  # cluster id -> its servers
        self._hosts: dict[int, str] = {}  # server id -> host
        self._observed: dict[int, ServerStatus] = {}
        self._settle: set[int] = set()
        self._kick = asyncio.Event()
        self.applied = asyncio.Event()  # set after each pass (tests await it; no sleeps)

    async def load(self) -> None:
        """Learn the servers and tell the dispatchers what to watch (before they run)."""
        targets: list[ObserverTarget] = []
        for cluster, _zones, servers in await self.store.clusters.all():
            self._clusters[cluster.id] = [s.id for s in servers]
            for s in servers:
                self._servers[(s.host, s.home_path.rstrip("/") or "/")] = s.id
                self._hosts[s.id] = s.host
                targets.append(
                    ObserverTarget(
                        host=s.host, ip=s.ip, home_path=s.home_path, sql_port=s.sql_port, rpc_port=s.rpc_port
                    )
                )
            self._settle.add(cluster.id)  # a task may have ended while no controller ran
        self.router.watch(WatchPlan(targets, self.observed, self.probe_interval, self.report_interval))
        self._kick.set()

    def observed(self, statuses: Sequence[ObserverStatus]) -> None:
        for o in statuses:
            sid = self._servers.get((o.host, o.home_path))
            if sid is not None:
                self._observed[sid] = server_status(o)
        self._kick.set()

    def task_ended(self, cluster_id: int) -> None:
        """Settle the cluster now; then take only reports probed after this call."""
        servers = self._clusters.get(cluster_id, [])
        for sid in servers:
            self._observed.pop(sid, None)
        self._settle.add(cluster_id)
        self.router.refresh({self._hosts[sid] for sid in servers})
        self._kick.set()

    async def run(self, stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            waits = [asyncio.ensure_future(self._kick.wait()), asyncio.ensure_future(stopping.wait())]
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            for w in waits:
                w.cancel()
            if stopping.is_set():
                return
            await asyncio.sleep(self.debounce)  # gather a burst of reports into one transaction
            self._kick.clear()
            observed, self._observed = self._observed, {}
            settle, self._settle = self._settle, set()
            try:
                moves = await self.store.clusters.reconcile(observed, settle)
            except Exception as exc:
                if not store_failure(exc):
                    log.exception("reconciling statuses failed; trying again with the next report")
                else:  # the database is away: said in one line, the reports kept for when it is back
                    log.warning("reconciling statuses: the store did not answer: %s", store_cause(exc))
                self._observed = {**observed, **self._observed}
                self._settle |= settle
                continue
            for entity, ident, old, new in moves:
                log.info("%s %s: %s -> %s (observed)", entity, ident, old, new)
            self.applied.set()
            self.applied.clear()
