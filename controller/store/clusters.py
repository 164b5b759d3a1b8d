"""Clusters, zones and servers: the inventory synced into the store, read back with their statuses, and
reconciled with what the observers are seen to be when no task holds their cluster (zones and servers
stopped on purpose, by a partial stop, keep their cluster RUNNING: store/intents.py)."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from obstop.controller.errors import NotFound
from obstop.controller.inventory import Inventory
from obstop.controller.states import cluster as cluster_states
from obstop.controller.states import server as server_states
from obstop.controller.states import zone as zone_states
from obstop.controller.states.cluster import ClusterStatus
from obstop.controller.states.intent import HeldDown, of_servers_held
from obstop.controller.states.server import ServerStatus
from obstop.controller.states.zone import ZoneStatus
from obstop.controller.store.db import Database, rows
from obstop.controller.store.intents import read_held_down
from obstop.controller.store.models import Cluster, HistoryEvent, Server, Task, Zone, history, now


@dataclass(frozen=True)
class Layout:
    """A cluster as a DAG is built from it: zones and servers with the statuses they have now."""

    cluster: Cluster
    zones: list[tuple[str, str]]  # (name, status)
    servers: list[tuple[int, str, str]]  # (id, zone, status)


def derived(statuses: Iterable[str]) -> str:
    return str(cluster_states.of_servers(statuses))


ClusterRows = tuple[Cluster, list[Zone], list[Server]]


class Clusters:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def sync(self, inv: Inventory) -> None:
        """Add new clusters, zones and servers; update names and addresses; keep every status as it is."""
        t0 = now()
        async with self.db.tx() as s:
            for c in inv.clusters:
                row = await s.get(Cluster, c.id)
                if row is None:
                    s.add(
                        Cluster(
                            id=c.id,
                            name=c.name,
                            ob_cluster_id=c.ob_cluster_id,
                            status=ClusterStatus.RUNNING,
                            updated_at=t0,
                        )
                    )
                else:
                    row.name, row.ob_cluster_id = c.name, c.ob_cluster_id
                zones = set((await s.scalars(sa.select(Zone.name).where(Zone.cluster_id == c.id))).all())
                s.add_all(
                    Zone(cluster_id=c.id, name=z, status=ZoneStatus.RUNNING, updated_at=t0)
                    for z in c.zones
                    if z not in zones
                )
                ids = [e.id for e in c.servers]
                known = {
                    x.id: x for x in (await s.scalars(sa.select(Server).where(Server.id.in_(ids)))).all()
                }
                for e in c.servers:
                    srv = known.get(e.id)
                    if srv is None:
                        s.add(
                            Server(
                                id=e.id,
                                cluster_id=c.id,
                                zone=e.zone,
                                host=e.host,
                                ip=e.ip,
                                sql_port=e.sql_port,
                                rpc_port=e.rpc_port,
                                home_path=e.home_path,
                                status=ServerStatus.RUNNING,
                                updated_at=t0,
                            )
                        )
                    else:
                        srv.cluster_id, srv.zone, srv.host, srv.ip = c.id, e.zone, e.host, e.ip
                        srv.sql_port, srv.rpc_port, srv.home_path = e.sql_port, e.rpc_port, e.home_path

    async def all(self) -> list[ClusterRows]:
        async with self.db.tx() as s:
            clusters = (await s.scalars(sa.select(Cluster).order_by(Cluster.id))).all()
            zones = (await s.scalars(sa.select(Zone).order_by(Zone.name))).all()
            servers = (await s.scalars(sa.select(Server).order_by(Server.id))).all()
        return [
            (c, [z for z in zones if z.cluster_id == c.id], [x for x in servers if x.cluster_id == c.id])
            for c in clusters
        ]

    async def rows(self) -> dict[int, Cluster]:
        """Clusters without their zones and servers (to name them)."""
        async with self.db.read() as s:
            return {c.id: c for c in (await s.scalars(sa.select(Cluster))).all()}

    async def get(self, cluster_id: int) -> ClusterRows:
        async with self.db.tx() as s:
            c = await s.get(Cluster, cluster_id)
            if c is None:
                raise NotFound(f"no cluster with id {cluster_id}")
            zones = (
                await s.scalars(sa.select(Zone).where(Zone.cluster_id == c.id).order_by(Zone.name))
            ).all()
            servers = (
                await s.scalars(sa.select(Server).where(Server.cluster_id == c.id).order_by(Server.id))
            ).all()
        return c, list(zones), list(servers)

    async def shape(self, cluster_id: int) -> tuple[Cluster, list[str], list[tuple[int, str]]]:
        """A cluster with its zone names and (server id, zone) pairs: what a DAG is built from."""
        async with self.db.tx() as s:
            c = await s.get(Cluster, cluster_id)
            if c is None:
                raise NotFound(f"no cluster with id {cluster_id}")
            zones = (
                await s.scalars(sa.select(Zone.name).where(Zone.cluster_id == cluster_id).order_by(Zone.name))
            ).all()
            servers = (
                await s.execute(
                    sa.select(Server.id, Server.zone)
                    .where(Server.cluster_id == cluster_id)
                    .order_by(Server.id)
                )
            ).all()
        return c, list(zones), [(int(a), str(b)) for a, b in servers]

    async def layout(self, cluster_id: int) -> Layout:
        async with self.db.tx() as s:
            c = await s.get(Cluster, cluster_id)
            if c is None:
                raise NotFound(f"no cluster with id {cluster_id}")
            zones = (
                await s.execute(
                    sa.select(Zone.name, Zone.status).where(Zone.cluster_id == cluster_id).order_by(Zone.name)
                )
            ).all()
            servers = (
                await s.execute(
                    sa.select(Server.id, Server.zone, Server.status)
                    .where(Server.cluster_id == cluster_id)
                    .order_by(Server.id)
                )
            ).all()
        return Layout(
            c, [(str(a), str(b)) for a, b in zones], [(int(a), str(b), str(c)) for a, b, c in servers]
        )

    async def reconcile(
        self, observed: Mapping[int, ServerStatus], settle: Collection[int] = ()
    ) -> list[tuple[str, int, str, str]]:
        """Statuses that follow reality, for clusters no task holds: each observed server takes its
        observed status; in a cluster to settle (its task just ended), a server left in an in-operation
        status with nothing observed becomes UNAVAILABLE; zones and clusters follow their servers.
        Answers the moves made (entity, id, from, to)."""
        t0 = now()
        moves: list[tuple[str, int, str, str]] = []
        async with self.db.tx() as s:
            ids = list(observed)
            clusters = set(settle)
            if ids:
                clusters |= set(
                    (await s.scalars(sa.select(Server.cluster_id).where(Server.id.in_(ids)).distinct())).all()
                )
            held = set(
                (await s.scalars(sa.select(Task.holds_cluster).where(Task.holds_cluster.in_(clusters)))).all()
            )
            for cid in sorted(clusters - held):
                moves += await self._reconcile_one(s, cid, observed, cid in settle)
            if moves:
                await s.execute(
                    sa.insert(HistoryEvent),
                    [history(None, e, i, a, b, t0, "observed") for e, i, a, b in moves],
                )
        return moves

    async def _reconcile_one(
        self, s: AsyncSession, cluster_id: int, observed: Mapping[int, ServerStatus], settle: bool
    ) -> list[tuple[str, int, str, str]]:
        t0 = now()
        moves: list[tuple[str, int, str, str]] = []
        servers = (
            await s.execute(
                sa.select(Server.id, Server.zone, Server.status).where(Server.cluster_id == cluster_id)
            )
        ).all()
        held = await read_held_down(s, cluster_id)
        now_status: dict[int, str] = {}
        for sid, _zone, status in servers:
            wanted = observed.get(sid)
            if wanted is None and settle and status in server_states.TRANSIENT:
                wanted = ServerStatus.UNAVAILABLE
            if wanted is not None and wanted != status:
                server_states.MACHINE.check(status, wanted, f"server {sid}")
                done = await s.execute(
                    sa.update(Server)
                    .where(Server.id == sid, Server.status == status)
                    .values(status=wanted, updated_at=t0)
                )
                if rows(done) == 1:
                    moves.append(("server", sid, status, wanted))
                    status = wanted
            now_status[sid] = status
        by_zone: dict[str, list[tuple[str, bool]]] = {}
        for sid, zone, _ in servers:
            by_zone.setdefault(zone, []).append((now_status[sid], held.covers(sid, zone)))
        zones = (
            await s.execute(sa.select(Zone.id, Zone.name, Zone.status).where(Zone.cluster_id == cluster_id))
        ).all()
        for zid, name, status in zones:
            zone_wanted = str(of_servers_held(by_zone.get(name, [])))
            if zone_wanted != status:
                zone_states.MACHINE.check(status, zone_wanted, f"zone {name}")
                done = await s.execute(
                    sa.update(Zone)
                    .where(Zone.id == zid, Zone.status == status)
                    .values(status=zone_wanted, updated_at=t0)
                )
                if rows(done) == 1:
                    moves.append(("zone", zid, status, zone_wanted))
        cluster = await s.get(Cluster, cluster_id)
        cluster_wanted = str(of_servers_held(item for items in by_zone.values() for item in items))
        if cluster is not None and cluster.status != cluster_wanted:
            old = cluster.status
            cluster_states.MACHINE.check(old, cluster_wanted, f"cluster {cluster_id}")
            done = await s.execute(
                sa.update(Cluster)
                .where(Cluster.id == cluster_id, Cluster.status == old)
                .values(status=cluster_wanted, updated_at=t0)
            )
            if rows(done) == 1:
                moves.append(("cluster", cluster_id, old, cluster_wanted))
        return moves

    async def held_down(self, cluster_id: int) -> HeldDown:
        """The cluster's zones and servers stopped on purpose (by partial stops that succeeded)."""
        async with self.db.tx() as s:
            return await read_held_down(s, cluster_id)

    async def server_statuses(self, cluster_id: int) -> dict[int, str]:
        async with self.db.tx() as s:
            rows = await s.execute(sa.select(Server.id, Server.status).where(Server.cluster_id == cluster_id))
        return {int(i): str(st) for i, st in rows}
