"""Clusters, zones and servers: the inventory synced into the store, read back with their statuses."""

from __future__ import annotations

import sqlalchemy as sa

from obstop.controller.errors import NotFound
from obstop.controller.inventory import Inventory
from obstop.controller.states.cluster import ClusterStatus
from obstop.controller.states.server import ServerStatus
from obstop.controller.states.zone import ZoneStatus
from obstop.controller.store.db import Database
from obstop.controller.store.models import Cluster, Server, Zone, now

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
        async with self.db.tx() as s:
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

    async def server_statuses(self, cluster_id: int) -> dict[int, str]:
        async with self.db.tx() as s:
            rows = await s.execute(sa.select(Server.id, Server.status).where(Server.cluster_id == cluster_id))
        return {int(i): str(st) for i, st in rows}
