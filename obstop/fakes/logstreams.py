"""The fake cluster's log streams: tenants with one replica of each log stream per zone, leaders elected
among live replicas, and GV$OB_LOG_STAT as OceanBase answers it (a row per replica on a live server).

A stream has a leader only while a majority of its replicas live (Paxos): lose it and the election fails,
every live replica says IN_SYNC = NO, and the tenant cannot write. Stopped zones and servers (STOP
ZONE/SERVER) keep their replicas in sync but give up leadership. Pure functions of the cluster's state,
so they are cheap to compute at every query and leave the fake observer's own startup light.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

# (tenant id, name, log stream ids): sys, and two user tenants (OceanBase numbers user tenants evenly)
TENANTS: tuple[tuple[int, str, tuple[int, ...]], ...] = (
    (1, "sys", (1,)),
    (1002, "mysql_app", (1, 1001)),
    (1004, "mysql_report", (1, 1001, 1002)),
)


@dataclass(frozen=True)
class Stream:
    tenant_id: int
    tenant_name: str
    ls_id: int
    members: tuple[str, ...]  # 'ip:rpc_port', one per zone
    first: int  # the member that leads while it can (leaders spread over the zones)

    @property
    def key(self) -> tuple[int, int]:
        return (self.tenant_id, self.ls_id)

    def by_preference(self) -> list[str]:
        return list(self.members[self.first :] + self.members[: self.first])


@dataclass(frozen=True)
class LogStatRow:
    tenant_id: int
    ls_id: int
    svr_ip: str
    svr_port: int
    role: str
    paxos_member_list: str
    paxos_replica_num: int
    in_sync: str

    COLUMNS = (
        "TENANT_ID",
        "LS_ID",
        "SVR_IP",
        "SVR_PORT",
        "ROLE",
        "PAXOS_MEMBER_LIST",
        "PAXOS_REPLICA_NUM",
        "IN_SYNC",
    )

    def values(self) -> tuple[object, ...]:
        return (
            self.tenant_id,
            self.ls_id,
            self.svr_ip,
            self.svr_port,
            self.role,
            self.paxos_member_list,
            self.paxos_replica_num,
            self.in_sync,
        )


def layout(servers: Sequence[tuple[str, str]]) -> list[Stream]:
    """servers: ('ip:rpc_port', zone). Each stream has a replica in every zone, on one of its servers."""
    by_zone: dict[str, list[str]] = {}
    for key, zone in servers:
        by_zone.setdefault(zone, []).append(key)
    zones = sorted(by_zone)
    for keys in by_zone.values():
        keys.sort()
    streams = []
    for ti, (tenant_id, name, ls_ids) in enumerate(TENANTS):
        for li, ls_id in enumerate(ls_ids):
            spread = ti + li
            members = tuple(by_zone[z][spread % len(by_zone[z])] for z in zones)
            streams.append(Stream(tenant_id, name, ls_id, members, spread % max(len(zones), 1)))
    return streams


def elect(stream: Stream, current: str, live: Collection[str], serving: Collection[str]) -> str:
    """The stream's leader: '' without a live majority; else the current one while it serves, else the
    first serving replica (a live one when none serves)."""
    if sum(m in live for m in stream.members) * 2 <= len(stream.members):
        return ""
    if current in stream.members and current in serving:
        return current
    order = stream.by_preference()
    return next((m for m in order if m in serving), next(m for m in order if m in live))


def stat_rows(
    streams: Sequence[Stream], leaders: dict[tuple[int, int], str], live: Collection[str]
) -> list[LogStatRow]:
    rows = []
    for st in streams:
        leader = leaders.get(st.key, "")
        members = ",".join(f"{m}:1" for m in st.members)  # OceanBase's ip:port:timestamp
        for m in st.members:
            if m not in live:
                continue  # a dead server answers nothing
            ip, port = m.rsplit(":", 1)
            role = "LEADER" if m == leader else "FOLLOWER"
            sync = "YES" if leader else "NO"
            num = len(st.members)
            rows.append(LogStatRow(st.tenant_id, st.ls_id, ip, int(port), role, members, num, sync))
    return rows


def loss(streams: Sequence[Stream], stopping: Collection[str], up: Collection[str]) -> str | None:
    """Why stopping would leave a stream without a majority of serving replicas, or None."""
    for st in streams:
        if not set(st.members) & set(stopping):
            continue
        left = sum(m in up for m in st.members)
        if left * 2 <= len(st.members):
            return (
                f"log stream {st.ls_id} of tenant {st.tenant_id} would keep {left} of "
                f"{len(st.members)} replicas"
            )
    return None
