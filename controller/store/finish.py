"""Group commit of the engine's writes: log lines, command records, and subtask finishes with their effects.

A finish ends a RUNNING subtask under its owner's lease (compare-and-set), stores its result and command
result, applies the status moves it carries (each checked against its machine), counts down its
downstreams' unfinished upstreams and promotes those left with none, and derives its task's status; all
in the transaction of the batch, set-based: a statement per kind of write, not per subtask.

A subtask being rolled back ends PENDING instead, and counts down its upstreams: an upstream whose
downstreams are all PENDING again is rolled back next. A subtask an operator is cancelling (CANCELING)
ends FAILED with operation CANCEL, whatever its step said. A task that ends releases its cluster.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from obstop.controller.states import IllegalTransition, Machine
from obstop.controller.states import cluster as cluster_states
from obstop.controller.states import server as server_states
from obstop.controller.states import task as task_states
from obstop.controller.states import zone as zone_states
from obstop.controller.states.subtask import (
    CANCELLED,
    FAIL,
    PROMOTE,
    ROLLED_BACK,
    SUCCEED,
    UNDO,
    UNDO_FAILED,
    Operation,
    SubtaskStatus,
)
from obstop.controller.states.task import TaskOperation, TaskStatus
from obstop.controller.store.journal import Journal
from obstop.controller.store.leases import stamp
from obstop.controller.store.models import (
    Cluster,
    CommandRecord,
    Server,
    Subtask,
    Task,
    Zone,
    history,
    now,
)

ST = cast(sa.Table, Subtask.__table__)  # Core statements: the hot path needs no ORM

Move = tuple[str, int, str]  # (cluster | zone | server, id, wanted status)
ENTITIES: dict[str, tuple[Any, Machine[Any]]] = {
    "cluster": (Cluster, cluster_states.MACHINE),
    "zone": (Zone, zone_states.MACHINE),
    "server": (Server, server_states.MACHINE),
}


@dataclass(frozen=True)
class FinishRequest:
    """A subtask's outcome, with the effects that commit with it."""

    subtask_id: int
    owner: str
    ok: bool
    line: str
    result: dict[str, Any] | None = None
    moves: tuple[Move, ...] = ()
    command_result: tuple[str, dict[str, Any]] | None = None
    backward: bool = False  # a rollback (or a skip of one): ends PENDING, and its upstreams follow


@dataclass(frozen=True)
class Finished:
    task_id: int
    task_status: TaskStatus | None  # the task's new status, when it changed
    promoted: int


class LeaseLost(Exception):
    """The subtask is no longer RUNNING under our lease (another controller, or an operator, moved it)."""


@dataclass(frozen=True)
class _Ended:
    task_id: int
    downstreams: list[int]
    upstreams: list[int]
    edge: tuple[SubtaskStatus, SubtaskStatus]


async def finish_in(
    s: AsyncSession, reqs: Sequence[FinishRequest], journal: Journal | None = None
) -> list[Finished | LeaseLost]:
    """The finishes, with their effects, in the caller's transaction; an outcome per request, in order.
    Their history rows and log lines go to `journal` (the caller writes it), else are written here."""
    own = journal is None
    journal = journal or Journal()
    t0 = now()
    current = await _current_statuses(s, reqs)
    # a success whose status moves are illegal becomes a failure saying why (nothing moves)
    reqs = [_check_moves(r, current) for r in reqs]
    done = await _end_subtasks(s, reqs, t0)
    # what was cancelled meanwhile failed, whatever its step said: no move, no promotion
    reqs = [
        replace(r, ok=False, moves=(), line=_cancelled_line(r.line))
        if r.subtask_id in done and done[r.subtask_id].edge == CANCELLED
        else r
        for r in reqs
    ]
    live = [r for r in reqs if r.subtask_id in done]
    events, lines = journal.events, journal.lines
    for r in live:
        end = done[r.subtask_id]
        frm, to = end.edge
        events.append(history(end.task_id, "subtask", r.subtask_id, frm, to, t0, r.line[:2000], r.subtask_id))
        lines.append({"subtask_id": r.subtask_id, "at": t0, "line": f"{stamp(t0)} {to}: {r.line}"})
    await _store_results(s, live, t0)
    events += await _apply_moves(s, live, done, current, t0)
    forward = [r for r in live if not r.backward]
    promoted, promote_events = await _promote(s, forward, done)
    events += promote_events
    back, back_events = await _promote_back(s, [r for r in live if r.backward], done)
    promoted += back
    events += back_events
    statuses = await _derive_tasks(s, live, done, t0, journal)
    if own:
        await journal.flush(s)
    per_task = Counter(task_id for _, task_id in promoted)
    out: list[Finished | LeaseLost] = []
    for r in reqs:
        if r.subtask_id not in done:
            out.append(LeaseLost(f"subtask {r.subtask_id} is no longer RUNNING under {r.owner}"))
        else:
            task_id = done[r.subtask_id].task_id
            out.append(Finished(task_id, statuses.get(task_id), per_task.get(task_id, 0)))
    return out


def _cancelled_line(line: str) -> str:
    return line if line.startswith("cancelled") else f"cancelled by the operator (the step said: {line})"


async def _current_statuses(s: AsyncSession, reqs: Sequence[FinishRequest]) -> dict[tuple[str, int], str]:
    current: dict[tuple[str, int], str] = {}
    for entity, (model, _) in ENTITIES.items():
        wanted = {i for r in reqs for e, i, _ in r.moves if e == entity}
        if wanted:
            table = model.__table__
            found = await s.execute(sa.select(table.c.id, table.c.status).where(table.c.id.in_(wanted)))
            current.update({(entity, i): st for i, st in found.all()})
    return current


def _check_moves(r: FinishRequest, current: dict[tuple[str, int], str]) -> FinishRequest:
    if not r.ok:
        return r
    for entity, ident, wanted in r.moves:
        status = current.get((entity, ident))
        if status is None:
            return replace(r, ok=False, line=f"no {entity} {ident}", moves=())
        try:
            ENTITIES[entity][1].check(status, wanted, f"{entity} {ident}")
        except IllegalTransition as exc:
            return replace(r, ok=False, line=str(exc), moves=())
    return r


async def _end_subtasks(s: AsyncSession, reqs: Sequence[FinishRequest], t0: datetime) -> dict[int, _Ended]:
    """RUNNING -> SUCCESSFUL, PENDING (rolled back) or FAILED, and CANCELING -> FAILED (CANCEL), only under
    the finisher's lease."""
    done: dict[int, _Ended] = {}
    # a subtask is RUNNING or CANCELING, never both: those left after the RUNNING ones (rare: cancelled,
    # or no longer ours) are tried as CANCELING last, so a batch with no cancel needs one statement
    groups: list[tuple[list[FinishRequest], tuple[SubtaskStatus, SubtaskStatus], dict[str, Any]]] = [
        ([r for r in reqs if r.ok and not r.backward], SUCCEED, {}),
        ([r for r in reqs if r.ok and r.backward], ROLLED_BACK, {}),
        ([r for r in reqs if not r.ok], FAIL, {}),
        (list(reqs), CANCELLED, {"operation": Operation.CANCEL}),
    ]
    for group, edge, extra in groups:
        ids = [r.subtask_id for r in group if r.subtask_id not in done]
        if not ids:
            continue
        frm, to = edge
        owners = {r.owner for r in group}
        # a rolled-back subtask shows no finish time: it is PENDING again, as if never run
        finish = None if edge == ROLLED_BACK else t0
        rows = await s.execute(
            sa.update(ST)
            .where(ST.c.id.in_(ids), ST.c.status == frm, ST.c.lease_owner.in_(owners))
            .values(status=to, finish_time=finish, lease_owner=None, lease_expires=None, **extra)
            .returning(ST.c.id, ST.c.task_id, ST.c.downstreams, ST.c.upstreams)
        )
        done.update({sid: _Ended(task_id, downs, ups, edge) for sid, task_id, downs, ups in rows.all()})
    return done


async def _store_results(s: AsyncSession, live: Sequence[FinishRequest], t0: datetime) -> None:
    with_result = [{"sid": r.subtask_id, "res": r.result} for r in live if r.result is not None]
    if with_result:
        await s.execute(
            sa.update(ST).where(ST.c.id == sa.bindparam("sid")).values(result=sa.bindparam("res")),
            with_result,
        )
    command_results = [
        {"cid": r.command_result[0], "res": r.command_result[1]} for r in live if r.command_result
    ]
    if command_results:
        table = cast(sa.Table, CommandRecord.__table__)
        await s.execute(
            sa.update(table)
            .where(table.c.command_id == sa.bindparam("cid"), table.c.result.is_(None))
            .values(result=sa.bindparam("res"), finished_at=t0),
            command_results,
        )


async def _apply_moves(
    s: AsyncSession,
    live: Sequence[FinishRequest],
    done: dict[int, _Ended],
    current: dict[tuple[str, int], str],
    t0: datetime,
) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    by_target: dict[tuple[str, str], list[int]] = {}
    for r in live:
        if not r.ok:
            continue
        for entity, ident, wanted in r.moves:
            if current.get((entity, ident)) != wanted:
                by_target.setdefault((entity, wanted), []).append(ident)
                events.append(
                    history(
                        done[r.subtask_id].task_id,
                        entity,
                        ident,
                        current.get((entity, ident)),
                        wanted,
                        t0,
                        None,
                        r.subtask_id,
                    )
                )
    for (entity, wanted), ids in by_target.items():
        model, machine = ENTITIES[entity]
        allowed = machine.sources(machine.states(wanted))  # compare-and-set: checked above, guarded here
        table = model.__table__
        await s.execute(
            sa.update(table)
            .where(table.c.id.in_(ids), table.c.status.in_(list(allowed)))
            .values(status=wanted, updated_at=t0)
        )
    return events


async def _promote(
    s: AsyncSession, live: Sequence[FinishRequest], done: dict[int, _Ended]
) -> tuple[list[tuple[int, int]], list[dict[str, Any]]]:
    """One decrement per finished upstream, then PENDING -> READY for those with nothing left to wait for."""
    pending: Counter[int] = Counter(d for r in live if r.ok for d in done[r.subtask_id].downstreams)
    if not pending:
        return [], []
    frm, to = PROMOTE
    by_amount: dict[int, list[int]] = {}
    for sid, n in pending.items():
        by_amount.setdefault(n, []).append(sid)
    promoted: list[tuple[int, int]] = []
    for n, ids in by_amount.items():
        # counted down and promoted in one statement (SET sees the row as it was): PENDING -> READY when
        # nothing is left to wait for; RETURNING sees it after, so "promoted" is READY now, waiting
        # before (READY is never waiting: the compare-and-set on PENDING is in the CASE)
        rows = await s.execute(
            sa.update(ST)
            .where(ST.c.id.in_(ids))
            .values(
                waiting=ST.c.waiting - n,
                status=sa.case((sa.and_(ST.c.waiting - n <= 0, ST.c.status == frm), to), else_=ST.c.status),
            )
            .returning(ST.c.id, ST.c.task_id, ST.c.status, ST.c.waiting)
        )
        promoted += [(int(a), int(b)) for a, b, st, w in rows.all() if st == to and w <= 0 < w + n]
    t0 = now()
    return promoted, [history(task_id, "subtask", sid, frm, to, t0, None, sid) for sid, task_id in promoted]


async def _promote_back(
    s: AsyncSession, live: Sequence[FinishRequest], done: dict[int, _Ended]
) -> tuple[list[tuple[int, int]], list[dict[str, Any]]]:
    """Rolling back: one decrement per downstream back to PENDING, then an upstream with none left (and
    something to roll back) becomes READY with operation ROLLBACK."""
    pending: Counter[int] = Counter(u for r in live if r.ok for u in done[r.subtask_id].upstreams)
    if not pending:
        return [], []
    await _count_down(s, pending)
    return await promote_rollback(s, list(pending))


async def _count_down(s: AsyncSession, pending: Counter[int]) -> None:
    """Each subtask's unfinished-upstream count, less what finished: a statement per distinct amount
    (in a stop, 1: each finish counts down its downstreams once; a Wait node takes them all at once)."""
    by_amount: dict[int, list[int]] = {}
    for sid, n in pending.items():
        by_amount.setdefault(n, []).append(sid)
    for n, ids in by_amount.items():
        await s.execute(sa.update(ST).where(ST.c.id.in_(ids)).values(waiting=ST.c.waiting - n))


async def promote_rollback(
    s: AsyncSession, ids: Sequence[int]
) -> tuple[list[tuple[int, int]], list[dict[str, Any]]]:
    """SUCCESSFUL or FAILED subtasks being rolled back whose downstreams are all PENDING -> READY."""
    promoted: list[tuple[int, int]] = []
    events: list[dict[str, Any]] = []
    t0 = now()
    for frm, to in (UNDO, UNDO_FAILED):
        rows = await s.execute(
            sa.update(ST)
            .where(
                ST.c.id.in_(list(ids)),
                ST.c.waiting <= 0,
                ST.c.status == frm,
                ST.c.operation == Operation.ROLLBACK,
            )
            .values(status=to)
            .returning(ST.c.id, ST.c.task_id)
        )
        found = [(int(a), int(b)) for a, b in rows.all()]
        promoted += found
        events += [history(t, "subtask", sid, frm, to, t0, "roll back", sid) for sid, t in found]
    return promoted, events


async def _derive_tasks(
    s: AsyncSession, live: Sequence[FinishRequest], done: dict[int, _Ended], t0: datetime, journal: Journal
) -> dict[int, TaskStatus | None]:
    # a task's status can change only when one of its subtasks failed, a sink finished, or (rolling
    # back) a source did
    tasks = {done[r.subtask_id].task_id for r in live}
    failed = SubtaskStatus.FAILED
    with_failure = (
        set(
            (
                await s.scalars(
                    sa.select(ST.c.task_id).where(ST.c.task_id.in_(tasks), ST.c.status == failed).distinct()
                )
            ).all()
        )
        if tasks
        else set()
    )
    ends = {
        done[r.subtask_id].task_id
        for r in live
        if r.ok and not (done[r.subtask_id].upstreams if r.backward else done[r.subtask_id].downstreams)
    }
    return {t: await derive_task(s, t, t0, journal) for t in sorted(with_failure | ends)}


async def derive_task(
    s: AsyncSession, task_id: int, t0: datetime, journal: Journal | None = None
) -> TaskStatus | None:
    """Set the task's status from its subtasks' (through the task machine); the new status, if it moved."""
    counts = (
        await s.execute(
            sa.select(ST.c.status, sa.func.count()).where(ST.c.task_id == task_id).group_by(ST.c.status)
        )
    ).all()
    tasks = cast(sa.Table, Task.__table__)
    row = (await s.execute(sa.select(tasks.c.status, tasks.c.operation).where(tasks.c.id == task_id))).one()
    old, rolling_back = TaskStatus(row[0]), row[1] == TaskOperation.ROLLBACK
    new = task_states.derive((SubtaskStatus(st) for st, _ in counts), rolling_back)
    if new == old:
        return None
    task_states.MACHINE.check(old, new, f"task {task_id}")
    values: dict[str, Any] = {"status": new, "finish_time": t0 if new != TaskStatus.RUNNING else None}
    if new is not TaskStatus.RUNNING:
        values["holds_cluster"] = None  # ended: the cluster is free (a retry or rollback takes it again)
    await s.execute(sa.update(tasks).where(tasks.c.id == task_id, tasks.c.status == old).values(**values))
    event = history(task_id, "task", task_id, old, new, t0)
    if journal is not None:
        journal.events.append(event)
    else:
        await Journal([event]).flush(s)
    return new
