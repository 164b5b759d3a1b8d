"""The inventory: which clusters exist, their zones and servers, and which agent serves each host."""

from __future__ import annotations

import ipaddress
import tomllib
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from obstop.agent.protocol import ObserverTarget
from obstop.agent.tomlconf import describe
from obstop.controller.errors import ConfigError


class ServerEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: int = Field(gt=0)
    zone: str = Field(min_length=1)
    host: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    ip: str = Field(min_length=1)

    @field_validator("ip")
    @classmethod
    def _ip(cls, v: str) -> str:
        return str(ipaddress.ip_address(v))  # ips go into SQL text ('ip:port'): only real addresses

    sql_port: int = Field(default=2881, ge=1, le=65535)
    rpc_port: int = Field(default=2882, ge=1, le=65535)
    home_path: str = Field(pattern=r"^/")

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
        seen: set[tuple[str, int]] = set()
        for s in self.servers:
            if (s.ip, s.rpc_port) in seen:
                raise ValueError(f"two servers at {s.ip}:{s.rpc_port}")
            seen.add((s.ip, s.rpc_port))
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
        return self


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
        raise ConfigError(f"inventory {path}: {describe(exc)}") from exc
