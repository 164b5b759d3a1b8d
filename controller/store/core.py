"""The durable store: SQLite (default) or PostgreSQL through SQLAlchemy's asyncio engine.

Every state change is a compare-and-set (`UPDATE ... WHERE id=? AND status IN (...)`; zero rows means
someone else moved it) committed with an event row before the engine acts on it. A subtask becomes
READY when its counter of unfinished upstreams reaches zero, so finishing one costs O(1), not O(fan-in).
"""

from __future__ import annotations

import contextlib
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import orjson
import sqlalchemy as sa
from alembic import command as alembic_command
from alembic.config import Config as AlembicConfig
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

from obstop.controller.errors import Conflict, NotFound
from obstop.controller.inventory import Inventory
from obstop.controller.states import IllegalTransition, check, sources
from obstop.controller.states import cluster as cluster_states
from obstop.controller.states import server as server_states
from obstop.controller.states import task as task_states
from obstop.controller.states import zone as zone_states
from obstop.controller.states.subtask import Operation, SubtaskStatus
from obstop.controller.states.task import TaskStatus
from obstop.controller.store.models import (
    Cluster,
    Command,
    CommandMark,
    Event,
    Meta,
    Server,
    Subtask,
    SubtaskLog,
    Task,
    Zone,
    now,
)

S = SubtaskStatus


def async_url(url: str) -> str:
    if url.startswith("sqlite:///"):
        return "sqlite+aiosqlite:///" + url[len("sqlite:///") :]
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url[len(prefix) :]
    return url


@dataclass(frozen=True)
class NodeSpec:
    """One subtask of a DAG before it is stored: its key in the task, step and edges by key."""

    node: str
    step: str
    name: str
    description: str
    upstreams: tuple[str, ...]
    parallel_idx: int = -1
    timeout: int = 60
    context: dict[str, Any] | None = None


_CLAIMED_COLUMNS = (
    Subtask.id,
    Subtask.task_id,
    Subtask.step,
    Subtask.name,
    Subtask.run_time,
    Subtask.timeout,
    Subtask.operation,
    Subtask.context,
)


@dataclass(frozen=True)
class Claimed:
    id: int
    task_id: int
    step: str
    name: str
    run_time: int
    timeout: int
    operation: str
    context: dict[str, Any]
    resumed: bool = False


@dataclass(frozen=True)
class Finished:
    task_id: int
    task_status: TaskStatus | None
    promoted: int


@dataclass(frozen=True)
class FinishRequest:
    """A subtask's outcome, with the effects that commit with it."""

    subtask_id: int
    owner: str
    ok: bool
    line: str
    result: dict[str, Any] | None = None
    moves: tuple[tuple[str, int, str], ...] = ()  # (entity: cluster | zone | server, id, wanted status)
    command_result: tuple[str, dict[str, Any]] | None = None


class LeaseLost(Exception):
    """The subtask is no longer RUNNING under our lease (another controller, or an operator, moved it)."""


class Store:
    def __init__(self, url: str) -> None:
        self.url = url
        self.id = ""  # set by open()
        self.is_sqlite = url.startswith("sqlite")
        kwargs: dict[str, Any] = {}
        if self.is_sqlite:
            path = url[len("sqlite:///") :]
            if path and path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            # one connection: SQLite has one writer anyway, and this keeps writers from colliding
            kwargs = {"pool_size": 1, "max_overflow": 0, "connect_args": {"timeout": 30}}
        else:
            kwargs = {"pool_size": 10, "max_overflow": 10}
        self.engine = create_async_engine(
            async_url(url), json_serializer=_json_dumps, json_deserializer=orjson.loads, **kwargs
        )
        if self.is_sqlite:
            sa.event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)

    @classmethod
    async def open(cls, url: str) -> Store:
        store = cls(url)
        await store.migrate()
        store.id = await store._store_id()
        return store

    async def _store_id(self) -> str:
        """A random id made once per store: command ids carry it, so a new store never repeats one."""
        async with self.tx() as s:
            found = await s.get(Meta, "store_id")
            if found is not None:
                return found.value
            s.add(Meta(key="store_id", value=uuid.uuid4().hex[:12]))
        async with self.tx() as s:  # another controller may have written it first: read what won
            return str(await s.scalar(sa.select(Meta.value).where(Meta.key == "store_id")))

    async def migrate(self) -> None:
        def upgrade(conn: sa.Connection) -> None:
            cfg = AlembicConfig()
            cfg.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
            cfg.attributes["connection"] = conn
            alembic_command.upgrade(cfg, "head")

        async with self.engine.begin() as conn:
            await conn.run_sync(upgrade)

    async def close(self) -> None:
        await self.engine.dispose()

    async def ping(self) -> None:
        async with self.tx() as s:
            await s.execute(sa.text("SELECT 1"))

    @contextlib.asynccontextmanager
    async def tx(self) -> AsyncIterator[AsyncSession]:
        async with self.sessions() as session, session.begin():
            yield session

    # --- inventory -------------------------------------------------------------------------------

    async def sync_inventory(self, inv: Inventory) -> None:
        """Add new clusters, zones and servers; update addresses; keep every status as it is."""
        async with self.tx() as s:
            for c in inv.clusters:
                row = await s.get(Cluster, c.id)
                if row is None:
                    s.add(
                        Cluster(
                            id=c.id,
                            name=c.name,
                            ob_cluster_id=c.ob_cluster_id,
                            status=cluster_states.ClusterStatus.RUNNING,
                            updated_at=now(),
                        )
                    )
                else:
                    row.name, row.ob_cluster_id = c.name, c.ob_cluster_id
                zones = set((await s.scalars(sa.select(Zone.name).where(Zone.cluster_id == c.id))).all())
                for z in c.zones:
                    if z not in zones:
                        s.add(
                            Zone(
                                cluster_id=c.id,
                                name=z,
                                status=zone_states.ZoneStatus.RUNNING,
                                updated_at=now(),
                            )
                        )
                known = {
                    x.id: x
                    for x in (
                        await s.scalars(sa.select(Server).where(Server.id.in_([e.id for e in c.servers])))
                    ).all()
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
                                status=server_states.ServerStatus.RUNNING,
                                updated_at=now(),
                            )
                        )
                    else:
                        srv.cluster_id, srv.zone, srv.host, srv.ip = c.id, e.zone, e.host, e.ip
                        srv.sql_port, srv.rpc_port, srv.home_path = e.sql_port, e.rpc_port, e.home_path

    async def clusters(self) -> list[tuple[Cluster, list[Zone], list[Server]]]:
        async with self.tx() as s:
            clusters = (await s.scalars(sa.select(Cluster).order_by(Cluster.id))).all()
            zones = (await s.scalars(sa.select(Zone).order_by(Zone.name))).all()
            servers = (await s.scalars(sa.select(Server).order_by(Server.id))).all()
        return [
            (c, [z for z in zones if z.cluster_id == c.id], [x for x in servers if x.cluster_id == c.id])
            for c in clusters
        ]

    async def cluster_shape(self, cluster_id: int) -> tuple[Cluster, list[str], list[tuple[int, str]]]:
        """A cluster with its zone names and (server id, zone) pairs: what a DAG is built from."""
        async with self.tx() as s:
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

    async def cluster_rows(self) -> dict[int, Cluster]:
        """Clusters without their zones and servers (to name them)."""
        async with self.tx() as s:
            return {c.id: c for c in (await s.scalars(sa.select(Cluster))).all()}

    async def cluster(self, cluster_id: int) -> tuple[Cluster, list[Zone], list[Server]]:
        async with self.tx() as s:
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

    # --- tasks -----------------------------------------------------------------------------------

    async def create_task(
        self,
        cluster_id: int,
        name: str,
        creator: tuple[int, str],
        context: dict[str, Any],
        nodes: Sequence[NodeSpec],
        require: frozenset[str],
    ) -> tuple[Task, list[SimpleNamespace]]:
        """Returns the task and its subtasks as inserted (for the answer, without reading them back)."""
        """Store a task and its DAG in one transaction; the task holds the cluster until it succeeds."""
        try:
            async with self.tx() as s:
                holder = await s.scalar(sa.select(Task).where(Task.holds_cluster == cluster_id))
                if holder is not None:
                    raise Conflict(
                        f"cluster {cluster_id} is held by task {holder.id} ({holder.name}, {holder.status}); "
                        "retry or roll back that task first"
                    )
                cluster = await s.get(Cluster, cluster_id)
                if cluster is None:
                    raise NotFound(f"no cluster with id {cluster_id}")
                if cluster.status not in require:
                    raise Conflict(
                        f"cluster {cluster_id} ({cluster.name}) is {cluster.status}: "
                        f"this needs it {' or '.join(sorted(require))}"
                    )
                t = Task(
                    name=name,
                    cluster_id=cluster_id,
                    holds_cluster=cluster_id,
                    status=TaskStatus.RUNNING,
                    creator_id=creator[0],
                    creator_name=creator[1],
                    context=context,
                    start_time=now(),
                )
                s.add(t)
                await s.flush()
                # ids are reserved first, so the DAG goes in with its edges in one set-based insert
                ids = dict(
                    zip((n.node for n in nodes), await self._reserve_subtask_ids(s, len(nodes)), strict=True)
                )
                downs: dict[str, list[int]] = {n.node: [] for n in nodes}
                for n in nodes:
                    for up in n.upstreams:
                        downs[up].append(ids[n.node])
                rows = [
                    {
                        "id": ids[n.node],
                        "task_id": t.id,
                        "node": n.node,
                        "step": n.step,
                        "name": n.name,
                        "description": n.description,
                        "status": S.READY if not n.upstreams else S.PENDING,
                        "operation": Operation.EXECUTE,
                        "parallel_idx": n.parallel_idx,
                        "run_time": 0,
                        "timeout": n.timeout,
                        "waiting": len(n.upstreams),
                        "upstreams": [ids[u] for u in n.upstreams],
                        "downstreams": downs[n.node],
                        "context": n.context or {},
                        "start_time": None,
                        "finish_time": None,
                        "lease_owner": None,
                        "lease_expires": None,
                        "result": None,
                    }
                    for n in nodes
                ]
                await s.execute(sa.insert(cast(sa.Table, Subtask.__table__)), rows)
                created = [SimpleNamespace(**r) for r in rows]
                s.add(
                    Event(
                        task_id=t.id,
                        entity="task",
                        entity_id=t.id,
                        from_status=None,
                        to_status=TaskStatus.RUNNING,
                        at=now(),
                        note=f"created by {creator[1]}",
                    )
                )
                return t, created
        except sa.exc.IntegrityError as exc:
            raise Conflict(f"cluster {cluster_id} is already held by another task") from exc

    async def _reserve_subtask_ids(self, s: AsyncSession, n: int) -> list[int]:
        if self.is_sqlite:  # one writer, and this transaction holds the write lock: the next ids are ours
            top = await s.scalar(sa.select(sa.func.coalesce(sa.func.max(Subtask.id), 0)))
            return list(range(int(top or 0) + 1, int(top or 0) + 1 + n))
        seq = sa.func.nextval(sa.func.pg_get_serial_sequence("subtasks", "id"))
        return [
            int(x) for x in (await s.scalars(sa.select(seq).select_from(sa.func.generate_series(1, n)))).all()
        ]

    async def task(self, task_id: int) -> tuple[Task, list[Subtask]]:
        async with self.tx() as s:
            t = await s.get(Task, task_id)
            if t is None:
                raise NotFound(f"no task with id {task_id}")
            subs = (
                await s.scalars(sa.select(Subtask).where(Subtask.task_id == task_id).order_by(Subtask.id))
            ).all()
        return t, list(subs)

    async def tasks(
        self, *, cluster_id: int | None, status: TaskStatus | None, page: int, size: int
    ) -> tuple[list[Task], int]:
        q = sa.select(Task)
        if cluster_id is not None:
            q = q.where(Task.cluster_id == cluster_id)
        if status is not None:
            q = q.where(Task.status == status)
        async with self.tx() as s:
            total = await s.scalar(sa.select(sa.func.count()).select_from(q.subquery())) or 0
            rows = (await s.scalars(q.order_by(Task.id.desc()).offset((page - 1) * size).limit(size))).all()
        return list(rows), total

    async def task_status(self, task_id: int) -> TaskStatus:
        async with self.tx() as s:
            status = await s.scalar(sa.select(Task.status).where(Task.id == task_id))
        if status is None:
            raise NotFound(f"no task with id {task_id}")
        return TaskStatus(status)

    async def task_header(self, task_id: int) -> tuple[int, dict[str, Any]]:
        """(cluster id, context) of a task, without its subtasks."""
        async with self.tx() as s:
            row = (
                await s.execute(sa.select(Task.cluster_id, Task.context).where(Task.id == task_id))
            ).first()
        if row is None:
            raise NotFound(f"no task with id {task_id}")
        return int(row[0]), dict(row[1])

    async def subtask_log(self, task_id: int, subtask_id: int) -> str:
        async with self.tx() as s:
            sub = await s.get(Subtask, subtask_id)
            if sub is None or sub.task_id != task_id:
                raise NotFound(f"task {task_id} has no subtask {subtask_id}")
            lines = (
                await s.scalars(
                    sa.select(SubtaskLog.line)
                    .where(SubtaskLog.subtask_id == subtask_id)
                    .order_by(SubtaskLog.id)
                )
            ).all()
        return "\n".join(lines) + ("\n" if lines else "")

    async def node_result(self, task_id: int, node: str) -> dict[str, Any] | None:
        """The recorded result of a task's subtask, by its node key (e.g. what a prepare step found)."""
        async with self.tx() as s:
            result: dict[str, Any] | None = await s.scalar(
                sa.select(Subtask.result).where(Subtask.task_id == task_id, Subtask.node == node)
            )
        return result

    # --- the engine's transitions ----------------------------------------------------------------

    async def claim_ready(self, owner: str, lease: float, limit: int) -> list[Claimed]:
        t0 = now()
        async with self.tx() as s:
            ids = sa.select(Subtask.id).where(Subtask.status == S.READY).order_by(Subtask.id).limit(limit)
            if not self.is_sqlite:
                ids = ids.with_for_update(skip_locked=True)
            rows = (
                await s.execute(
                    sa.update(Subtask)
                    .where(Subtask.id.in_(ids.scalar_subquery()), Subtask.status == S.READY)
                    .values(
                        status=S.RUNNING,
                        run_time=Subtask.run_time + 1,
                        start_time=t0,
                        finish_time=None,
                        lease_owner=owner,
                        lease_expires=t0 + timedelta(seconds=lease),
                    )
                    .returning(*_CLAIMED_COLUMNS)
                )
            ).all()
            claimed = [Claimed(**r._asdict()) for r in rows]
            if claimed:
                await s.execute(
                    sa.insert(cast(sa.Table, Event.__table__)),
                    [
                        {
                            "task_id": c.task_id,
                            "subtask_id": c.id,
                            "entity": "subtask",
                            "entity_id": c.id,
                            "from_status": S.READY,
                            "to_status": S.RUNNING,
                            "at": t0,
                            "note": f"run {c.run_time} by {owner}",
                        }
                        for c in claimed
                    ],
                )
                await s.execute(
                    sa.insert(cast(sa.Table, SubtaskLog.__table__)),
                    [
                        {"subtask_id": c.id, "at": t0, "line": _separator(t0, c.run_time, c.operation)}
                        for c in claimed
                    ],
                )
        return claimed

    async def reclaim(self, owner: str, lease: float) -> list[Claimed]:
        """RUNNING subtasks whose lease is ours (we restarted) or has expired: take them over."""
        t0 = now()
        async with self.tx() as s:
            rows = (
                await s.execute(
                    sa.update(Subtask)
                    .where(
                        Subtask.status == S.RUNNING,
                        sa.or_(
                            Subtask.lease_owner == owner,
                            Subtask.lease_expires < t0,
                            Subtask.lease_owner.is_(None),
                        ),
                    )
                    .values(lease_owner=owner, lease_expires=t0 + timedelta(seconds=lease))
                    .returning(*_CLAIMED_COLUMNS)
                )
            ).all()
            claimed = [Claimed(**r._asdict(), resumed=True) for r in rows]
            for c in claimed:
                s.add(
                    Event(
                        task_id=c.task_id,
                        subtask_id=c.id,
                        entity="subtask",
                        entity_id=c.id,
                        from_status=S.RUNNING,
                        to_status=S.RUNNING,
                        at=t0,
                        note=f"resumed by {owner}",
                    )
                )
                s.add(
                    SubtaskLog(
                        subtask_id=c.id,
                        at=t0,
                        line=f"{_stamp(t0)} resumed by {owner} after a restart; "
                        "re-checking and re-running this step (its command id is unchanged)",
                    )
                )
        return claimed

    async def renew(self, owner: str, ids: Sequence[int], lease: float) -> None:
        if not ids:
            return
        async with self.tx() as s:
            await s.execute(
                sa.update(Subtask)
                .where(Subtask.id.in_(list(ids)), Subtask.lease_owner == owner, Subtask.status == S.RUNNING)
                .values(lease_expires=now() + timedelta(seconds=lease))
            )

    async def _derive_task(self, s: AsyncSession, task_id: int, t0: datetime) -> TaskStatus | None:
        counts = (
            await s.execute(
                sa.select(Subtask.status, sa.func.count())
                .where(Subtask.task_id == task_id)
                .group_by(Subtask.status)
            )
        ).all()
        new = task_states.derive(S(st) for st, _ in counts)
        task = await s.get(Task, task_id)
        assert task is not None
        old = TaskStatus(task.status)  # before the update: the ORM syncs the object to the new status
        if new == old:
            return None
        task_states_check(old, new)
        values: dict[str, Any] = {"status": new, "finish_time": t0 if new != TaskStatus.RUNNING else None}
        if new is TaskStatus.SUCCESSFUL:
            values["holds_cluster"] = None
        await s.execute(sa.update(Task).where(Task.id == task_id, Task.status == old).values(**values))
        s.add(
            Event(
                task_id=task_id,
                entity="task",
                entity_id=task_id,
                from_status=old,
                to_status=new,
                at=t0,
                note=None,
            )
        )
        return new

    async def retry(self, task_id: int, subtask_id: int | None = None) -> list[int]:
        """FAILED subtasks (all, or the one named) -> READY with operation RETRY; the task runs again."""
        t0 = now()
        async with self.tx() as s:
            task = await s.get(Task, task_id)
            if task is None:
                raise NotFound(f"no task with id {task_id}")
            q = sa.select(Subtask).where(Subtask.task_id == task_id)
            if subtask_id is not None:
                sub = await s.get(Subtask, subtask_id)
                if sub is None or sub.task_id != task_id:
                    raise NotFound(f"task {task_id} has no subtask {subtask_id}")
                if sub.status != S.FAILED:
                    raise Conflict(
                        f"subtask {subtask_id} ({sub.name}) is {sub.status}: only a FAILED one can be retried"
                    )
                q = q.where(Subtask.id == subtask_id)
            elif task.status != TaskStatus.FAILED:
                raise Conflict(f"task {task_id} is {task.status}: only a FAILED task can be retried")
            ids = (
                await s.scalars(
                    sa.update(Subtask)
                    .where(
                        Subtask.id.in_(
                            q.with_only_columns(Subtask.id)
                            .where(Subtask.status == S.FAILED)
                            .scalar_subquery()
                        ),
                        Subtask.status == S.FAILED,
                    )
                    .values(status=S.READY, operation=Operation.RETRY)
                    .returning(Subtask.id)
                )
            ).all()
            for sid in ids:
                s.add(
                    Event(
                        task_id=task_id,
                        subtask_id=sid,
                        entity="subtask",
                        entity_id=sid,
                        from_status=S.FAILED,
                        to_status=S.READY,
                        at=t0,
                        note="retry",
                    )
                )
            old = task.status  # before the update syncs the object
            if old != TaskStatus.RUNNING:
                await s.execute(
                    sa.update(Task)
                    .where(Task.id == task_id)
                    .values(status=TaskStatus.RUNNING, finish_time=None)
                )
                s.add(
                    Event(
                        task_id=task_id,
                        entity="task",
                        entity_id=task_id,
                        from_status=old,
                        to_status=TaskStatus.RUNNING,
                        at=t0,
                        note="retry",
                    )
                )
        return list(ids)

    async def write_batch(
        self,
        logs: Sequence[tuple[int, datetime, str]],
        finishes: Sequence[FinishRequest],
        begins: Sequence[tuple[str, int, str, str]],
    ) -> tuple[list[Finished | LeaseLost], dict[str, dict[str, Any] | None]]:
        """One transaction for many subtasks: log lines, command records, and finishes with their effects.

        Set-based (a statement per kind of write, not per subtask), so its cost grows slowly with the batch.
        """
        async with self.tx() as s:
            if logs:
                await s.execute(
                    sa.insert(SubtaskLog), [{"subtask_id": i, "at": at, "line": ln} for i, at, ln in logs]
                )
            recorded = await self._begin_commands(s, begins) if begins else {}
            outcomes = await self._finish_many(s, finishes) if finishes else []
        return outcomes, recorded

    async def _begin_commands(
        self, s: AsyncSession, begins: Sequence[tuple[str, int, str, str]]
    ) -> dict[str, dict[str, Any] | None]:
        ids = list({b[0] for b in begins})
        known = {
            cid: result
            for cid, result in (
                await s.execute(
                    sa.select(Command.command_id, Command.result).where(Command.command_id.in_(ids))
                )
            )
        }
        fresh = {b[0]: b for b in begins if b[0] not in known}
        if fresh:
            t0 = now()
            await s.execute(
                sa.insert(Command),
                [
                    {
                        "command_id": cid,
                        "subtask_id": sid,
                        "agent_id": agent,
                        "kind": kind,
                        "created_at": t0,
                        "sends": 1,
                        "result": None,
                        "finished_at": None,
                    }
                    for cid, sid, agent, kind in fresh.values()
                ],
            )
        resent = [cid for cid, result in known.items() if result is None]
        if resent:
            await s.execute(
                sa.update(Command).where(Command.command_id.in_(resent)).values(sends=Command.sends + 1)
            )
        return {cid: known.get(cid) for cid in ids}

    async def _finish_many(
        self, s: AsyncSession, reqs: Sequence[FinishRequest]
    ) -> list[Finished | LeaseLost]:
        t0 = now()
        # status moves a finish carries must be legal, else that subtask fails instead (nothing moves)
        current: dict[tuple[str, int], str] = {}
        for entity, (model, _, _) in _ENTITIES.items():
            wanted = {i for r in reqs for e, i, _ in r.moves if e == entity}
            if wanted:
                found = await s.execute(sa.select(model.id, model.status).where(model.id.in_(wanted)))
                current.update({(entity, i): st for i, st in found.all()})
        reqs = [_check_moves(r, current) for r in reqs]
        done: dict[int, tuple[int, list[int]]] = {}
        for ok in (True, False):
            ids = [r.subtask_id for r in reqs if r.ok is ok]
            if not ids:
                continue
            owners = {r.owner for r in reqs if r.ok is ok}
            rows = (
                await s.execute(
                    sa.update(Subtask)
                    .where(Subtask.id.in_(ids), Subtask.status == S.RUNNING, Subtask.lease_owner.in_(owners))
                    .values(
                        status=S.SUCCESSFUL if ok else S.FAILED,
                        finish_time=t0,
                        lease_owner=None,
                        lease_expires=None,
                    )
                    .returning(Subtask.id, Subtask.task_id, Subtask.downstreams)
                )
            ).all()
            done.update({sid: (task_id, downs) for sid, task_id, downs in rows})
        live = [r for r in reqs if r.subtask_id in done]
        with_result = [{"id": r.subtask_id, "result": r.result} for r in live if r.result is not None]
        if with_result:
            await s.execute(sa.update(Subtask), with_result)
        for entity, target in {(e, w) for r in live if r.ok for e, _, w in r.moves}:
            ids = [
                i
                for r in live
                if r.ok
                for e, i, w in r.moves
                if (e, w) == (entity, target) and current.get((e, i)) != w
            ]
            if ids:
                model = _ENTITIES[entity][0]
                await s.execute(
                    sa.update(model).where(model.id.in_(ids)).values(status=target, updated_at=t0)
                )
        command_results = [
            {"cid": r.command_result[0], "res": r.command_result[1]} for r in live if r.command_result
        ]
        if command_results:
            commands = cast(sa.Table, Command.__table__)
            await s.execute(
                sa.update(commands)
                .where(commands.c.command_id == sa.bindparam("cid"), commands.c.result.is_(None))
                .values(result=sa.bindparam("res"), finished_at=t0),
                command_results,
            )
        events: list[dict[str, Any]] = []
        lines: list[dict[str, Any]] = []
        for r in live:
            task_id = done[r.subtask_id][0]
            to = S.SUCCESSFUL if r.ok else S.FAILED
            events.append(
                {
                    "task_id": task_id,
                    "subtask_id": r.subtask_id,
                    "entity": "subtask",
                    "entity_id": r.subtask_id,
                    "from_status": S.RUNNING,
                    "to_status": to,
                    "at": t0,
                    "note": r.line[:2000],
                }
            )
            lines.append({"subtask_id": r.subtask_id, "at": t0, "line": f"{_stamp(t0)} {to}: {r.line}"})
            if r.ok:
                events.extend(
                    {
                        "task_id": task_id,
                        "subtask_id": r.subtask_id,
                        "entity": e,
                        "entity_id": i,
                        "from_status": current.get((e, i)),
                        "to_status": w,
                        "at": t0,
                        "note": None,
                    }
                    for e, i, w in r.moves
                    if current.get((e, i)) != w
                )
        # downstreams: one decrement per finished upstream, then promote those with nothing left to wait for
        pending: Counter[int] = Counter(d for r in live if r.ok for d in done[r.subtask_id][1])
        promoted: list[tuple[int, int]] = []
        if pending:
            subtasks = cast(sa.Table, Subtask.__table__)
            await s.execute(
                sa.update(subtasks)
                .where(subtasks.c.id == sa.bindparam("sid"))
                .values(waiting=subtasks.c.waiting - sa.bindparam("n")),
                [{"sid": d, "n": n} for d, n in pending.items()],
            )
            promoted = [
                (a, b)
                for a, b in (
                    await s.execute(
                        sa.update(Subtask)
                        .where(
                            Subtask.id.in_(list(pending)), Subtask.waiting <= 0, Subtask.status == S.PENDING
                        )
                        .values(status=S.READY)
                        .returning(Subtask.id, Subtask.task_id)
                    )
                ).all()
            ]
            events.extend(
                {
                    "task_id": task_id,
                    "subtask_id": sid,
                    "entity": "subtask",
                    "entity_id": sid,
                    "from_status": S.PENDING,
                    "to_status": S.READY,
                    "at": t0,
                    "note": None,
                }
                for sid, task_id in promoted
            )
        if events:
            await s.execute(sa.insert(cast(sa.Table, Event.__table__)), events)
        if lines:
            await s.execute(sa.insert(cast(sa.Table, SubtaskLog.__table__)), lines)
        # a task's status can change only when one of its subtasks failed or a sink finished
        tasks = {done[r.subtask_id][0] for r in live}
        with_failure = (
            set(
                (
                    await s.scalars(
                        sa.select(Subtask.task_id)
                        .where(Subtask.task_id.in_(tasks), Subtask.status == S.FAILED)
                        .distinct()
                    )
                ).all()
            )
            if tasks
            else set()
        )
        sinks = {done[r.subtask_id][0] for r in live if r.ok and not done[r.subtask_id][1]}
        statuses = {t: await self._derive_task(s, t, t0) for t in sorted(with_failure | sinks)}
        per_task_promoted = Counter(task_id for _, task_id in promoted)
        out: list[Finished | LeaseLost] = []
        for r in reqs:
            if r.subtask_id not in done:
                out.append(LeaseLost(f"subtask {r.subtask_id} is no longer RUNNING under {r.owner}"))
                continue
            task_id = done[r.subtask_id][0]
            out.append(Finished(task_id, statuses.get(task_id), per_task_promoted.get(task_id, 0)))
        return out

    # --- cluster, zone and server statuses -------------------------------------------------------

    async def move_cluster(self, task_id: int, cluster_id: int, wanted: cluster_states.ClusterStatus) -> str:
        return await self._move(
            task_id,
            Cluster,
            Cluster.id == cluster_id,
            cluster_states.TRANSITIONS,
            wanted,
            "cluster",
            cluster_id,
        )

    async def _move(
        self, task_id: int, model: Any, where: Any, table: Any, wanted: Any, entity: str, entity_id: int
    ) -> str:
        """CAS the status to wanted from any state allowed to reach it; returns the former status."""
        async with self.tx() as s:
            current = await s.scalar(sa.select(model.status).where(where))
            if current is None:
                raise NotFound(f"no {entity} {entity_id}")
            if current == wanted:
                return str(current)
            allowed = sources(table, wanted)
            res = await s.execute(
                sa.update(model)
                .where(where, model.status.in_(list(allowed)))
                .values(status=wanted, updated_at=now())
            )
            if res.rowcount == 0:  # type: ignore[attr-defined]
                raise IllegalTransition(f"{entity} {entity_id}", type(wanted)(current), wanted)
            s.add(
                Event(
                    task_id=task_id,
                    entity=entity,
                    entity_id=entity_id,
                    from_status=current,
                    to_status=wanted,
                    at=now(),
                    note=None,
                )
            )
        return str(current)

    # --- commands --------------------------------------------------------------------------------

    async def mark(self, command_id: str, mark: str) -> bool:
        """Record a mark of a command; True if it was already there (the unique key decides)."""
        try:
            async with self.tx() as s:
                if await s.get(CommandMark, (command_id, mark)) is not None:
                    return True
                s.add(CommandMark(command_id=command_id, mark=mark, at=now()))
        except sa.exc.IntegrityError:
            return True
        return False

    async def commands_of(self, subtask_ids: Sequence[int]) -> list[Command]:
        async with self.tx() as s:
            return list(
                (await s.scalars(sa.select(Command).where(Command.subtask_id.in_(list(subtask_ids))))).all()
            )

    async def events(self, task_id: int) -> list[Event]:
        async with self.tx() as s:
            return list(
                (await s.scalars(sa.select(Event).where(Event.task_id == task_id).order_by(Event.id))).all()
            )


def _json_dumps(value: Any) -> str:
    return orjson.dumps(value).decode()  # a DAG of thousands of subtasks: three JSON columns a row


_ENTITIES: dict[str, tuple[Any, Any, Any]] = {
    "cluster": (Cluster, cluster_states.TRANSITIONS, cluster_states.ClusterStatus),
    "zone": (Zone, zone_states.TRANSITIONS, zone_states.ZoneStatus),
    "server": (Server, server_states.TRANSITIONS, server_states.ServerStatus),
}


def _check_moves(r: FinishRequest, current: dict[tuple[str, int], str]) -> FinishRequest:
    """A successful finish whose status moves are illegal becomes a failure saying why."""
    if not r.ok:
        return r
    for entity, ident, wanted in r.moves:
        now_status = current.get((entity, ident))
        if now_status is None:
            return replace(r, ok=False, line=f"no {entity} {ident}", moves=())
        _, table, enum = _ENTITIES[entity]
        try:
            check(f"{entity} {ident}", table, enum(now_status), enum(wanted))
        except IllegalTransition as exc:
            return replace(r, ok=False, line=str(exc), moves=())
    return r


def task_states_check(current: TaskStatus, wanted: TaskStatus) -> None:
    if wanted not in task_states.TRANSITIONS[current]:
        raise IllegalTransition("task", current, wanted)


def _stamp(t: datetime) -> str:
    return t.astimezone().isoformat(timespec="milliseconds")


def _separator(t: datetime, run_time: int, operation: str) -> str:
    return f"==================== {_stamp(t)} run {run_time} ({operation}) ===================="


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()
