"""The fake observer's SQL port: the MySQL protocol (mysql-mimic), answering the OceanBase SQL a stop uses
(OCEANBASE_SQL.md) from the fake cluster's shared state, and recording every statement.

STOP ZONE/SERVER are refused, as OceanBase refuses them, when they would leave a log stream without a
majority; they take `stop_zone_delay` / `stop_server_delay` seconds (settings) and fail with OceanBase's
timeout error when that is longer than the session's ob_query_timeout.

`python -m obstop.fakes.sql` serves one address for a whole cluster of servers that have no process of
their own (the scale benchmark's): every server of an inventory's cluster is registered, alive while
this process lives.

    python -m obstop.fakes.sql --cluster-dir D --inventory inventory.toml --cluster-id 1 \
        --listen 127.77.0.1:2881 --password-file sys.password --freeze-delay 0.2
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import signal
import socket
import tomllib
from pathlib import Path
from typing import Any

from mysql_mimic import IdentityProvider, MysqlServer, NativePasswordAuthPlugin, Session, User
from mysql_mimic.errors import ErrorCode, MysqlError

from obstop.fakes.cluster import FakeCluster
from obstop.fakes.logstreams import TENANTS, LogStatRow

_WS = re.compile(r"\s+")
_ADDR = re.compile(r"'([0-9.]+):(\d+)'")
_FREEZE = re.compile(r"^ALTER SYSTEM MINOR FREEZE\b(.*)$", re.I)
_STOP_ZONE = re.compile(r"^ALTER SYSTEM (?:FORCE )?STOP ZONE '([^']+)'", re.I)
_STOP_SERVER = re.compile(r"^ALTER SYSTEM (?:FORCE )?STOP SERVER (.*)$", re.I)
_START_ZONE = re.compile(r"^ALTER SYSTEM START ZONE '([^']+)'", re.I)
_START_SERVER = re.compile(r"^ALTER SYSTEM START SERVER (.*)$", re.I)
_SET = re.compile(r"^SET\s+(?:SESSION\s+)?@?@?(ob_query_timeout|ob_trx_timeout|autocommit|names)\b", re.I)
_QUERY_TIMEOUT = re.compile(r"ob_query_timeout\s*=\s*(\d+)", re.I)
OB_TIMEOUT, OB_OP_NOT_ALLOW = 4012, 4179  # OceanBase's error codes
_LS_INFO = re.compile(r"__all_virtual_ls_info.*svr_ip\s*=\s*'([0-9.]+)'.*svr_port\s*=\s*(\d+)", re.I | re.S)
_LS_INFO_IN = re.compile(r"__all_virtual_ls_info.*\(svr_ip, svr_port\) IN \((.*)\)", re.I | re.S)
_PAIR = re.compile(r"\(\s*'([0-9.]+)'\s*,\s*(\d+)\s*\)")


class Identity(IdentityProvider):  # type: ignore[misc]  # mysql-mimic ships no types
    def __init__(self, cluster: FakeCluster) -> None:
        self.cluster = cluster

    def get_plugins(self) -> list[Any]:
        return [NativePasswordAuthPlugin()]

    async def get_user(self, username: str) -> User | None:
        if username.split("@")[0] != "root":
            return None
        password = await asyncio.to_thread(self.cluster.setting, "password", "")
        return User(
            name=username,
            auth_string=NativePasswordAuthPlugin.create_auth_string(password) if password else None,
            auth_plugin=NativePasswordAuthPlugin.name,
        )


class ObSession(Session):  # type: ignore[misc]
    def __init__(self, cluster: FakeCluster, me: str) -> None:
        super().__init__()
        self.cluster = cluster
        self.me = me
        self.query_timeout = 10.0  # seconds: OceanBase's default ob_query_timeout
        self.conn = 0

    async def init(self, connection: Any) -> None:
        await super().init(connection)
        self.conn = await asyncio.to_thread(self.cluster.connect, self.me)

    async def close(self) -> None:
        await super().close()
        if self.conn:
            await asyncio.to_thread(self.cluster.disconnect, self.conn)

    async def handle_query(self, sql: str, attrs: dict[str, str]) -> Any:
        text = _WS.sub(" ", sql.strip().rstrip(";"))
        await asyncio.to_thread(self.cluster.record, self.me, text, self.conn)
        upper = text.upper()
        if m := _FREEZE.match(text):
            servers = [(ip, int(port)) for ip, port in _ADDR.findall(m.group(1))]
            if not servers:  # a freeze of the whole cluster
                servers = [
                    (s.ip, s.rpc_port) for s in await asyncio.to_thread(self.cluster.servers) if s.alive
                ]
            await asyncio.to_thread(self.cluster.freeze, servers)
            return None
        if m := _STOP_ZONE.match(text):
            zone = m.group(1)
            keys = {s.key for s in await asyncio.to_thread(self.cluster.servers) if s.zone == zone}
            await self._stop_service("stop_zone_delay", keys)
            await asyncio.to_thread(self.cluster.stop_zone, zone)
            return None
        if m := _STOP_SERVER.match(text):
            found = [(ip, int(port)) for ip, port in _ADDR.findall(m.group(1))]
            await self._stop_service("stop_server_delay", {f"{ip}:{port}" for ip, port in found})
            for ip, port in found:
                await asyncio.to_thread(self.cluster.stop_server, ip, port)
            return None
        if m := _START_ZONE.match(text):
            await asyncio.to_thread(self.cluster.start_zone, m.group(1))
            return None
        if m := _START_SERVER.match(text):
            for ip, port in _ADDR.findall(m.group(1)):
                await asyncio.to_thread(self.cluster.start_server, ip, int(port))
            return None
        if _SET.match(text):
            if m := _QUERY_TIMEOUT.search(text):
                self.query_timeout = int(m.group(1)) / 1_000_000
            return None
        if "GV$OB_LOG_STAT" in upper:
            stat = await asyncio.to_thread(self.cluster.log_stat)
            return [r.values() for r in stat], list(LogStatRow.COLUMNS)
        if "DBA_OB_TENANTS" in upper:
            return [(t, name) for t, name, _ in TENANTS], ["TENANT_ID", "TENANT_NAME"]
        if "DBA_OB_SERVERS" in upper:
            rows = [
                (
                    s.ip,
                    s.rpc_port,
                    s.zone,
                    "ACTIVE" if s.alive else "INACTIVE",
                    s.stop_time,
                    1 if s.alive else 0,
                )
                for s in await asyncio.to_thread(self.cluster.servers)
            ]
            return rows, ["SVR_IP", "SVR_PORT", "ZONE", "STATUS", "STOP_TIME", "START_SERVICE_TIME"]
        if "DBA_OB_ZONES" in upper:
            return await asyncio.to_thread(self.cluster.zones), ["ZONE", "STATUS"]
        if m := _LS_INFO_IN.search(text):  # the minimum checkpoint of each server asked for, grouped
            asked = [(ip, int(port)) for ip, port in _PAIR.findall(m.group(1))]
            scns = await asyncio.to_thread(self.cluster.checkpoints, asked)
            answer = [(ip, port, scns[ip, port]) for ip, port in dict.fromkeys(asked) if (ip, port) in scns]
            return answer, ["svr_ip", "svr_port", "MIN(checkpoint_scn)"]
        if m := _LS_INFO.search(text):
            scn = await asyncio.to_thread(self.cluster.checkpoint, m.group(1), int(m.group(2)))
            return ([] if scn is None else [(scn,)]), ["checkpoint_scn"]
        if upper.startswith("ALTER SYSTEM"):
            raise MysqlError(f"fake cluster does not know: {text[:80]}", ErrorCode.NOT_SUPPORTED_YET)
        return await super().handle_query(sql, attrs)

    async def _stop_service(self, delay_setting: str, keys: set[str]) -> None:
        """As OceanBase: refused without a majority left; slow when told to be; a timeout error when
        slower than ob_query_timeout (and then nothing is stopped)."""
        if why := await asyncio.to_thread(self.cluster.majority_loss, keys):
            raise MysqlError(f"Operation not allowed now: {why}", OB_OP_NOT_ALLOW)
        delay = float(await asyncio.to_thread(self.cluster.setting, delay_setting, "0"))
        if delay > self.query_timeout:
            await asyncio.sleep(self.query_timeout)
            raise MysqlError(
                f"Timeout, query has reached the maximum query timeout: {int(self.query_timeout * 1e6)}(us)",
                OB_TIMEOUT,
            )
        if delay > 0:
            await asyncio.sleep(delay)


class _Refuse:
    """A SQL port that accepts and drops every connection (misbehaviour --sql-refuse)."""

    def __init__(self, server: asyncio.Server) -> None:
        self.server = server

    async def __aenter__(self) -> _Refuse:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.server.close()


async def serve_sql(sock: socket.socket, cluster_dir: Path, args: argparse.Namespace) -> Any:
    """Register this observer in its cluster and serve its SQL port; returns an async context manager."""
    cluster = FakeCluster(cluster_dir)
    await asyncio.to_thread(cluster.register, args.ip, args.rpc_port, args.sql_port, args.zone)
    if getattr(args, "sql_refuse", False):

        async def drop(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.close()

        return _Refuse(await asyncio.start_server(drop, sock=sock))
    me = f"{args.ip}:{args.sql_port}"
    server = MysqlServer(session_factory=lambda: ObSession(cluster, me), identity_provider=Identity(cluster))
    await server.start_server(sock=sock, port=None)
    return server


async def serve_cluster(cluster: FakeCluster, addresses: list[tuple[str, int]]) -> None:
    """One process answering SQL at every server's address (as each observer would), until SIGTERM."""
    me = f"{addresses[0][0]}:{addresses[0][1]}"
    server = MysqlServer(session_factory=lambda: ObSession(cluster, me), identity_provider=Identity(cluster))
    for port in sorted({p for _, p in addresses}):
        await server.start_server(host=[ip for ip, p in addresses if p == port], port=port)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    print(f"fake cluster SQL on {len(addresses)} address(es), from {me}", flush=True)
    await stop.wait()
    server.close()


def main() -> None:
    p = argparse.ArgumentParser(description="a fake cluster's SQL: one process for all its servers")
    p.add_argument("--cluster-dir", required=True)
    p.add_argument("--inventory", required=True, help="the controller's inventory.toml")
    p.add_argument("--cluster-id", type=int, default=1)
    p.add_argument("--password-file", default=None)
    p.add_argument("--freeze-delay", type=float, default=0.2, help="seconds from a freeze to its checkpoint")
    args = p.parse_args()
    inventory = tomllib.loads(Path(args.inventory).read_text())
    (found,) = [c for c in inventory["clusters"] if c["id"] == args.cluster_id]
    password = Path(args.password_file).read_text().strip() if args.password_file else ""
    cluster = FakeCluster.create(Path(args.cluster_dir), password=password, freeze_delay=args.freeze_delay)
    servers = [
        (s["ip"], s.get("rpc_port", 2882), s.get("sql_port", 2881), s["zone"]) for s in found["servers"]
    ]
    cluster.register_all(servers, os.getpid())
    asyncio.run(serve_cluster(cluster, [(ip, sql) for ip, _, sql, _ in servers]))


if __name__ == "__main__":
    main()
