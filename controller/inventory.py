"""The inventory: which clusters exist, their zones and servers, and which agent serves each host.

Refused at start, naming both servers, when two servers (in any clusters) share a host and home path or an
address and port: a stop of one cluster would otherwise stop the other's observers. A home path is
absolute, normalized, not `/`, and free of control characters.
"""

from __future__ import annotations

import ipaddress
import tomllib
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from obstop.agent.protocol import AGENT_ID_PATTERN, ObserverTarget, check_home_path
from obstop.agent.tomlconf import describe
from obstop.controller.errors import ConfigError


class ServerEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: int = Field(gt=0)
    zone: str = Field(min_length=1)
    host: str = Field(min_length=1, max_length=128, pattern=AGENT_ID_PATTERN)
    ip: str = Field(min_length=1)

    @field_validator("ip")
    @classmethod
    def _ip(cls, v: str) -> str:
        return str(ipaddress.ip_address(v))  # ips go into SQL text ('ip:port'): only real addresses

    sql_port: int = Field(default=2881, ge=1, le=65535)
    rpc_port: int = Field(default=2882, ge=1, le=65535)
    home_path: str = Field(min_length=1, max_length=4096)

    @field_validator("home_path")
    @classmethod
    def _home_path(cls, v: str) -> str:
        return check_home_path(v)

    @model_validator(mode="after")
    def _two_ports(self) -> ServerEntry:
        if self.sql_port == self.rpc_port:
            raise ValueError(f"sql_port and rpc_port are both {self.sql_port}")
        return self

    @property
    def name(self) -> str:
        return f"server {self.id} ({self.host}:{self.home_path}, {self.ip}:{self.sql_port}/{self.rpc_port})"

    @property
    def addresses(self) -> tuple[tuple[str, int], tuple[str, int]]:
        return ((self.ip, self.sql_port), (self.ip, self.rpc_port))

    def target(self) -> ObserverTarget:
        return ObserverTarget(
            host=self.host,
            ip=self.ip,
            home_path=self.home_path,
            sql_port=self.sql_port,
            rpc_port=self.rpc_port,
        )


class ClusterEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: int = Field(gt=0)
    name: str = Field(min_length=1)
    ob_cluster_id: int = Field(gt=0)
    servers: list[ServerEntry] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique(self) -> ClusterEntry:
        _refuse_shared([(self.id, s) for s in self.servers])
        return self

    @property
    def zones(self) -> list[str]:
        return sorted({s.zone for s in self.servers})


class Inventory(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    clusters: list[ClusterEntry] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_ids(self) -> Inventory:
        cluster_ids: set[int] = set()
        server_ids: dict[int, int] = {}
        for c in self.clusters:
            if c.id in cluster_ids:
                raise ValueError(f"cluster id {c.id} appears twice")
            cluster_ids.add(c.id)
            for s in c.servers:
                if s.id in server_ids:
                    raise ValueError(f"server id {s.id} appears in clusters {server_ids[s.id]} and {c.id}")
                server_ids[s.id] = c.id
        _refuse_shared([(c.id, s) for c in self.clusters for s in c.servers])
        return self


def _refuse_shared(servers: list[tuple[int, ServerEntry]]) -> None:
    """Two servers never share an observer: the same host and home path, or an address and port."""
    homes: dict[tuple[str, str], tuple[int, ServerEntry]] = {}
    ports: dict[tuple[str, int], tuple[int, ServerEntry]] = {}
    for cluster_id, s in servers:
        here = (cluster_id, s)
        other = homes.setdefault((s.host, s.home_path), here)
        if other is not here:
            raise ValueError(
                f"{_named(other)} and {_named(here)} share host {s.host} and home_path {s.home_path}"
            )
        for address in dict.fromkeys(s.addresses):
            other = ports.setdefault(address, here)
            if other is not here:
                raise ValueError(f"{_named(other)} and {_named(here)} share {address[0]}:{address[1]}")
    return None


def _named(entry: tuple[int, ServerEntry]) -> str:
    return f"cluster {entry[0]} {entry[1].name}"


def load_inventory(path: Path) -> Inventory:
    """Parse and validate; a malformed file is refused naming the file, the cluster and the field."""
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError as exc:
        raise ConfigError(f"inventory {path}: no such file") from exc
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"inventory {path}: {exc}") from exc
    raw = data.get("clusters", [])
    if not isinstance(raw, list):
        raise ConfigError(f"inventory {path}: 'clusters' must be an array of tables ([[clusters]])")
    for i, item in enumerate(raw):
        try:
            ClusterEntry.model_validate(item)
        except ValidationError as exc:
            name = item.get("name", "?") if isinstance(item, dict) else "?"
            ident = item.get("id", "?") if isinstance(item, dict) else "?"
            raise ConfigError(
                f"inventory {path}: cluster #{i + 1} (id {ident}, name {name}): {describe(exc)}"
            ) from exc
    try:
        return Inventory.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"inventory {path}: {describe(exc).removeprefix('(top): ')}") from exc
