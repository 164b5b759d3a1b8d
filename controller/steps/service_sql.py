"""STOP/START ZONE and SERVER in SQL, for partial stops: the statements, what the cluster says of a zone or
server, and bounded waits that end with the reason when they time out.

`ALTER SYSTEM STOP ZONE 'z'` / `STOP SERVER 'ip:rpc_port'` moves the leaders away (OceanBase refuses it
when a log stream would lose its majority); `FORCE STOP` skips the wait for the logs. Both run under a
large ob_query_timeout (`[[cluster_sql]] service_timeout`); then, unless forced, the step waits until no
log stream leader is left on the servers. `START ZONE/SERVER` runs after the processes are back and
answering, and the step waits until the cluster shows the zone ACTIVE or the server no longer stopped.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable, Collection

from obstop.controller.errors import StepFailed
from obstop.controller.steps.cluster_sql import ClusterSQL, Log, SQLFailed
from obstop.controller.steps.majority import LOG_STAT_SQL, Replica

ZONES_SQL = "SELECT ZONE, STATUS FROM oceanbase.DBA_OB_ZONES"
SERVERS_SQL = (
    "SELECT SVR_IP, SVR_PORT, ZONE, STATUS, STOP_TIME, START_SERVICE_TIME FROM oceanbase.DBA_OB_SERVERS"
)
STATEMENT_SLACK = 5.0  # seconds the client waits beyond ob_query_timeout: the cluster's own error says why
# OceanBase zone names are identifiers; anything else never goes into SQL text
_ZONE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_KEY = re.compile(r"^[0-9A-Fa-f.:]+:\d{1,5}$")


def literal(name: str) -> str:
    """A zone name or 'ip:rpc_port' as a SQL string literal, or StepFailed (never quoted blindly)."""
    if not (_ZONE.match(name) or _KEY.match(name)):
        raise StepFailed(f"{name!r} cannot be named in SQL (expected a zone identifier or ip:port)")
    return f"'{name}'"


async def alter(sql: ClusterSQL, statement: str, timeout: float) -> None:
    """One ALTER SYSTEM under ob_query_timeout = timeout, sent once (its error is the answer)."""
    await sql.execute(f"SET ob_query_timeout = {int(timeout * 1_000_000)}")
    await sql.execute(statement, timeout=timeout + STATEMENT_SLACK, once=True)


async def zone_status(sql: ClusterSQL, zone: str) -> str | None:
    for name, status in await sql.execute(ZONES_SQL, quiet=True):
        if str(name) == zone:
            return str(status).upper()
    return None


async def server_stop_time(sql: ClusterSQL, key: str) -> int | None:
    """STOP_TIME of the server (> 0 once STOP SERVER took effect), or None when the cluster lists none."""
    for ip, port, _zone, _status, stop_time, _start in await sql.execute(SERVERS_SQL, quiet=True):
        if f"{ip}:{int(port)}" == key:
            return int(stop_time or 0)
    return None


async def leaders_on(sql: ClusterSQL, keys: Collection[str]) -> list[Replica]:
    rows = [Replica.of_row(r) for r in await sql.execute(LOG_STAT_SQL, quiet=True)]
    return [r for r in rows if r.leader and r.server in keys]


def describe_leaders(leaders: list[Replica]) -> str:
    shown = ", ".join(f"tenant {r.tenant_id} log stream {r.ls_id} on {r.server}" for r in leaders[:5])
    more = f" and {len(leaders) - 5} more" if len(leaders) > 5 else ""
    return f"{len(leaders)} log stream leader(s) still there ({shown}{more})"


async def wait_until(
    pending: Callable[[], Awaitable[str | None]], timeout: float, log: Log, what: str
) -> float:
    """Poll (quickly at first, backing off) until `pending` answers None; the seconds it took. Raises
    StepFailed with the last answer (what is still not so) after `timeout`."""
    started = time.monotonic()
    delay, last_report = 0.05, started
    while True:
        try:
            still = await pending()
        except SQLFailed as exc:
            raise StepFailed(f"waiting until {what}: {exc.message}") from exc
        waited = time.monotonic() - started
        if still is None:
            return waited
        if waited >= timeout:
            raise StepFailed(f"{what}: not so after {timeout:g}s: {still}")
        if time.monotonic() - last_report >= 5:
            last_report = time.monotonic()
            await log(f"still waiting until {what} ({waited:.0f}s of {timeout:g}s): {still}")
        # a poll interval: the cluster offers no event to await
        await asyncio.sleep(min(delay, max(0.0, started + timeout - time.monotonic())))
        delay = min(delay * 1.6, 2.0)
