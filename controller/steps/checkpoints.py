"""The checkpoint waits of a minor freeze, pooled per cluster.

Each server's "Prepare stop observer" waits until its minimum checkpoint_scn has moved past the value it
had before the freeze. Rather than a session and a poller per server, a cluster has one SQL session while
any of its servers waits (opened through its RUNNING servers, falling over as ClusterSQL does; closed the
moment the last wait announced ends, or after LINGER idle seconds) and one loop that asks, in one
statement per poll, for the checkpoints of every server still waiting. Each waiter keeps its own backoff
(fast first, capped), its own deadline and its own log lines; a waiter whose subtask is cancelled simply
leaves; a session that fails fails the waiters it served.

The loops are tasks of the poller's TaskGroup (`run`, owned by the controller's); when the poller is
not running (the controller stopping), a waiter runs a loop of its own, in its own task.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from obstop.controller.config import ClusterSQLConfig
from obstop.controller.errors import StepFailed
from obstop.controller.steps.cluster_sql import ClusterSQL, Log, SQLFailed, SQLUnavailable

log = logging.getLogger("obstop.controller.freeze")

MAX_PER_STATEMENT = 1000  # servers per checkpoint statement: at most ~30 KB of SQL text
FIRST_DELAY, MAX_DELAY, GROWTH = 0.05, 2.0, 1.6  # each waiter's poll interval: fast first, capped
MIN_GAP = 0.05  # between two polls of one cluster: waiters arriving together share a poll
MAX_CONNECT_FAILURES = 3  # failed connects of a session written to each waiting server's log
LINGER = 1.0  # seconds a session idles while announced waits have yet to begin
REPORT_EVERY = 5.0  # seconds between a waiter's "still waiting" lines

Endpoints = Callable[[], Awaitable[list[tuple[str, int]]]]


def checkpoints_sql(n: int) -> str:
    """The minimum checkpoint_scn of each of n servers ((svr_ip, svr_port) pairs), in one statement. The
    row IN list is how OceanBase's own inner SQL names servers: a virtual table takes its query ranges
    from it, so only those servers are asked."""
    pairs = ", ".join(["(%s, %s)"] * n)
    return (
        "SELECT svr_ip, svr_port, MIN(checkpoint_scn) FROM oceanbase.__all_virtual_ls_info "
        f"WHERE (svr_ip, svr_port) IN ({pairs}) GROUP BY svr_ip, svr_port"
    )


async def read_checkpoints(
    sql: ClusterSQL, servers: Sequence[tuple[str, int]], *, quiet: bool = False
) -> dict[str, int | None]:
    """'ip:rpc_port' -> minimum checkpoint_scn, None for a server with no log stream (no row). One
    statement per MAX_PER_STATEMENT servers. Rows are matched to the servers asked for by address value
    (the database compares addresses as it likes: '::1' and '0:0::1' are one server)."""
    found: dict[tuple[str, int], int | None] = {}
    wanted = list(dict.fromkeys(servers))
    for i in range(0, len(wanted), MAX_PER_STATEMENT):
        chunk = wanted[i : i + MAX_PER_STATEMENT]
        args = [x for ip, port in chunk for x in (ip, port)]
        for ip, port, scn in await sql.execute(checkpoints_sql(len(chunk)), args, quiet=quiet):
            found[(_address(str(ip)), int(port))] = None if scn is None else int(scn)
    return {f"{ip}:{port}": found.get((_address(ip), int(port))) for ip, port in wanted}


def _address(ip: str) -> str:
    try:
        return str(ipaddress.ip_address(ip.strip()))
    except ValueError:
        return ip.strip().lower()


@dataclass(eq=False)
class Waiter:
    """One server's wait: done when its checkpoint passes `before`, failed at started + timeout_s."""

    ip: str
    rpc_port: int
    before: int
    timeout_s: float
    log: Log
    expect: frozenset[str] = frozenset()  # the servers whose waits come with it ('ip:rpc_port')
    started: float = field(default_factory=time.monotonic)
    done: asyncio.Future[None] = field(default_factory=lambda: asyncio.get_running_loop().create_future())
    delay: float = FIRST_DELAY
    next_at: float = 0.0
    last_report: float = 0.0

    def __post_init__(self) -> None:
        self.next_at = self.last_report = self.started

    @property
    def key(self) -> str:
        return f"{self.ip}:{self.rpc_port}"

    @property
    def deadline(self) -> float:
        return self.started + self.timeout_s

    def finish(self, error: BaseException | None = None) -> None:
        if self.done.done():
            return
        if error is None:
            self.done.set_result(None)
        else:
            self.done.set_exception(error)


class ClusterPoll:
    """One cluster's session and loop, for as long as any of its servers waits."""

    def __init__(self, config: ClusterSQLConfig, endpoints: Endpoints) -> None:
        self.config = config
        self.endpoints = endpoints
        self.waiters: set[Waiter] = set()
        self.closing = False  # the loop has decided to end: a new waiter starts another
        self.polls = 0
        self.expected: set[str] = set()  # every server whose wait was announced with a waiter
        self.finished: set[str] = set()  # those whose wait has ended (resolved, failed, left)
        self._connect_failures = 0
        self._changed = asyncio.Event()
        self._last_poll = float("-inf")
        self._planned = float("inf")

    def add(self, w: Waiter) -> None:
        w.next_at = max(w.started, self._last_poll + MIN_GAP)
        self.waiters.add(w)
        self.expected |= w.expect | {w.key}
        if w.next_at < self._planned:
            self._changed.set()

    def remove(self, w: Waiter) -> None:
        self._leave(w)

    def _leave(self, w: Waiter) -> None:
        self.waiters.discard(w)
        self.finished.add(w.key)
        if not self.waiters:
            self._changed.set()  # nobody waits: the loop decides whether to close now

    async def _log(self, line: str) -> None:
        """The session's own lines (connected, failed over) go to every waiting server's log; past
        MAX_CONNECT_FAILURES, a session's failed connects are left to the error that lists them all."""
        if line.startswith("SQL connect to "):
            self._connect_failures += 1
            if self._connect_failures > MAX_CONNECT_FAILURES:
                return
        for w in list(self.waiters):
            await w.log(line)

    async def run(self) -> None:
        try:
            # read by the loop, once per session: waits arriving meanwhile join at once
            found = await self.endpoints()
            async with ClusterSQL(self.config, found, self._log) as sql:
                timeout_us = int(self.config.statement_timeout * 1_000_000)
                await sql.execute(f"SET ob_query_timeout = {timeout_us}", quiet=True)
                await self._poll(sql)
        except SQLUnavailable as exc:
            unavailable = exc.message
            self._fail_all(lambda w: SQLUnavailable(unavailable))
        except SQLFailed as exc:
            failed = exc.message
            self._fail_all(lambda w: StepFailed(f"waiting for the freeze of {w.key}: {failed}"))
        except Exception as exc:  # a bug here must fail the waits, not the controller
            log.exception("checkpoint poll of %s failed", self.config.cluster_id)
            broken = repr(exc)
            self._fail_all(lambda w: StepFailed(f"waiting for the freeze of {w.key}: {broken}"))
        finally:
            self.closing = True
            self._fail_all(lambda w: StepFailed(f"waiting for the freeze of {w.key}: polling stopped"))

    def _fail_all(self, error: Callable[[Waiter], BaseException]) -> None:
        self.closing = True
        for w in list(self.waiters):
            w.finish(error(w))
        self.waiters.clear()

    async def _poll(self, sql: ClusterSQL) -> None:
        idle_since: float | None = None
        while True:
            if not self.waiters:
                # closed once every announced wait has ended (the kills begin then, and a session left
                # open to an observer being killed would hold its SQL port in FIN_WAIT2 after the
                # process is gone); while some have yet to begin, kept up to LINGER seconds idle
                idle_since = idle_since or time.monotonic()
                left = idle_since + LINGER - time.monotonic()
                if self.expected <= self.finished or left <= 0:
                    self.closing = True  # decided without yielding: no waiter can slip in unseen
                    return
                self._planned = float("inf")  # the next waiter wakes the loop
                self._changed.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(left):
                        await self._changed.wait()
                continue
            idle_since = None
            now = time.monotonic()
            self._planned = max(min(w.next_at for w in self.waiters), self._last_poll + MIN_GAP)
            if self._planned > now:
                self._changed.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._planned - now):
                        await self._changed.wait()
                continue
            self._planned = float("inf")
            batch = list(self.waiters)
            self._last_poll = time.monotonic()
            self.polls += 1
            found = await read_checkpoints(sql, [(w.ip, w.rpc_port) for w in batch], quiet=True)
            now = time.monotonic()
            for w in batch:
                if w in self.waiters and not w.done.done():
                    await self._judge(w, found.get(w.key), now)

    async def _judge(self, w: Waiter, current: int | None, now: float) -> None:
        waited = now - w.started
        if current is None:
            await w.log(f"{w.key} has no log stream now: nothing to wait for")
        elif current > w.before:
            ms = waited * 1000
            await w.log(f"checkpoint of {w.key} advanced {w.before} -> {current} after {ms:.0f} ms")
        elif now >= w.deadline:
            self._leave(w)
            w.finish(
                StepFailed(
                    f"minor freeze of {w.key} not done after {w.timeout_s:g}s: checkpoint_scn still "
                    f"{current} (was {w.before} before the freeze); no process was touched"
                )
            )
            return
        else:
            if now - w.last_report >= REPORT_EVERY:
                w.last_report = now
                of = f"({waited:.0f}s of {w.timeout_s:g}s)"
                await w.log(f"still waiting for the checkpoint of {w.key} {of}")
            w.next_at = min(now + w.delay, w.deadline)
            w.delay = min(w.delay * GROWTH, MAX_DELAY)
            return
        self._leave(w)
        w.finish()


class CheckpointPoller:
    """The clusters' checkpoint loops; `run` holds the TaskGroup that owns them."""

    def __init__(self) -> None:
        self._polls: dict[int, ClusterPoll] = {}
        self._tg: asyncio.TaskGroup | None = None

    async def run(self, stopping: asyncio.Event) -> None:
        """Until stopping is set; then until the loops of the waits still running have ended."""
        async with asyncio.TaskGroup() as tg:
            self._tg = tg
            try:
                await stopping.wait()
            finally:
                self._tg = None

    def poll_of(self, cluster_id: int) -> ClusterPoll | None:
        """The cluster's current loop, if one runs (for tests and metrics)."""
        return self._polls.get(cluster_id)

    async def wait(
        self, cluster_id: int, config: ClusterSQLConfig, endpoints: Endpoints, waiter: Waiter
    ) -> None:
        """Until the waiter's checkpoint has passed its `before`; StepFailed at its deadline or on an SQL
        failure, SQLUnavailable when no server of the cluster answers."""
        poll = self._polls.get(cluster_id)
        if poll is None or poll.closing:
            poll = ClusterPoll(config, endpoints)
            if self._tg is None:  # not running (the controller stops): this task polls alone
                waiter.expect = frozenset()  # for itself only
                poll.add(waiter)
                try:
                    await poll.run()
                except BaseException:
                    if waiter.done.done() and not waiter.done.cancelled():
                        waiter.done.exception()  # seen: its own task ends with the cause
                    raise
                await waiter.done
                return
            self._polls[cluster_id] = poll
            self._tg.create_task(self._loop(cluster_id, poll), name=f"freeze-poll-{cluster_id}")
        poll.add(waiter)
        try:
            await waiter.done
        finally:
            poll.remove(waiter)

    async def _loop(self, cluster_id: int, poll: ClusterPoll) -> None:
        try:
            await poll.run()
        finally:
            if self._polls.get(cluster_id) is poll:
                del self._polls[cluster_id]
