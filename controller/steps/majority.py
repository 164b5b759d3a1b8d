"""The majority check before a partial stop touches anything: for every log stream with a replica on the
servers being stopped, the replicas in sync outside them must be more than half of PAXOS_REPLICA_NUM.

Read from GV$OB_LOG_STAT (a row per replica, answered by the live servers: a dead server has no row) and
DBA_OB_TENANTS (to name the tenant). A replica is in sync when its row says IN_SYNC = YES (the leader's
own row counts too) and its server is not known to be stopped. `force` never skips this check.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from obstop.controller.steps.cluster_sql import ClusterSQL

LOG_STAT_SQL = (
    "SELECT TENANT_ID, LS_ID, SVR_IP, SVR_PORT, ROLE, PAXOS_MEMBER_LIST, PAXOS_REPLICA_NUM, IN_SYNC "
    "FROM oceanbase.GV$OB_LOG_STAT"
)
TENANTS_SQL = "SELECT TENANT_ID, TENANT_NAME FROM oceanbase.DBA_OB_TENANTS"
SHOWN = 5  # losses named in a refusal; the count says how many more


@dataclass(frozen=True)
class Replica:
    tenant_id: int
    ls_id: int
    server: str  # 'ip:rpc_port'
    leader: bool
    members: tuple[str, ...]  # 'ip:rpc_port' of the Paxos members, as this row lists them
    replica_num: int
    in_sync: bool

    @classmethod
    def of_row(cls, row: Sequence[Any]) -> Replica:
        tenant, ls, ip, port, role, members, num, sync = row[:8]
        listed = tuple(":".join(m.strip().split(":")[:2]) for m in str(members or "").split(",") if m.strip())
        return cls(
            int(tenant),
            int(ls),
            f"{ip}:{int(port)}",
            str(role).upper() == "LEADER",
            listed,
            int(num or 0),
            str(sync).upper() in ("YES", "1", "TRUE"),
        )


@dataclass(frozen=True)
class Loss:
    """A log stream that would be left without a majority in sync."""

    tenant_id: int
    tenant: str
    ls_id: int
    replica_num: int
    in_sync_outside: tuple[str, ...]

    @property
    def needed(self) -> int:
        return self.replica_num // 2 + 1

    def describe(self) -> str:
        where = ", ".join(self.in_sync_outside) or "none"
        return (
            f"tenant {self.tenant} ({self.tenant_id}) log stream {self.ls_id} would keep "
            f"{len(self.in_sync_outside)} of {self.replica_num} replicas in sync ({where}); "
            f"a majority is {self.needed}"
        )


@dataclass(frozen=True)
class Verdict:
    checked: int  # log streams with a replica on the servers being stopped
    losses: list[Loss]

    def refusal(self, what: str) -> str:
        shown = "; ".join(loss.describe() for loss in self.losses[:SHOWN])
        more = f"; and {len(self.losses) - SHOWN} more log stream(s)" if len(self.losses) > SHOWN else ""
        return f"{what} would lose the majority of {len(self.losses)} log stream(s): {shown}{more}"


def evaluate(
    replicas: Iterable[Replica],
    stopping: Collection[str],
    stopped: Collection[str] = (),
    tenants: dict[int, str] | None = None,
) -> Verdict:
    """stopping: the servers to stop; stopped: servers known to be down (never counted in sync)."""
    streams: dict[tuple[int, int], list[Replica]] = {}
    for r in replicas:
        streams.setdefault((r.tenant_id, r.ls_id), []).append(r)
    checked, losses = 0, []
    for (tenant_id, ls_id), rows in sorted(streams.items()):
        leader_lists = [r.members for r in rows if r.leader and r.members]
        members = set(leader_lists[0] if leader_lists else (m for r in rows for m in r.members))
        members |= {r.server for r in rows}
        if not members & set(stopping):
            continue
        checked += 1
        replica_num = max([r.replica_num for r in rows] + [len(members)])
        in_sync = {r.server for r in rows if (r.in_sync or r.leader) and r.server not in stopped}
        outside = tuple(sorted((in_sync & members) - set(stopping)))
        if len(outside) * 2 <= replica_num:
            name = (tenants or {}).get(tenant_id, "?")
            losses.append(Loss(tenant_id, name, ls_id, replica_num, outside))
    return Verdict(checked, losses)


async def read(sql: ClusterSQL) -> tuple[list[Replica], dict[int, str]]:
    rows = await sql.execute(LOG_STAT_SQL)
    names = {int(t): str(n) for t, n in await sql.execute(TENANTS_SQL)}
    return [Replica.of_row(r) for r in rows], names
