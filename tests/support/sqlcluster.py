"""Fake clusters that answer OceanBase SQL (the freeze): their observers and the controller config with
the sys tenant's credentials."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.support.controller import write_config
from tests.support.fakes import Cluster, Fakes

PASSWORD = "s3cret-sys"


def start(
    fakes: Fakes, cluster_dir: Path, n: int = 3, misbehave: dict[int, list[str]] | None = None
) -> Cluster:
    out = Cluster()
    for i in range(n):
        fake, pid = fakes.start(
            *(misbehave or {}).get(i, []), "--cluster-dir", str(cluster_dir), "--zone", f"zone{i + 1}"
        )
        out.add(fake, pid, f"zone{i + 1}")
    return out


def config(
    tmp_path: Path,
    cluster: Cluster,
    password: str = PASSWORD,
    sql: dict[str, Any] | None = None,
    **overrides: Any,
) -> Path:
    """sql: more keys of the cluster's [[cluster_sql]] (e.g. service_timeout)."""
    pw = tmp_path / "sys.password"
    pw.write_text(password + "\n")
    return write_config(
        tmp_path,
        cluster,
        f"sqlite:///{tmp_path}/c.db",
        cluster_sql=[{"cluster_id": 1, "user": "root@sys", "password_file": str(pw), **(sql or {})}],
        **overrides,
    )


def start_zones(
    fakes: Fakes, cluster_dir: Path, zones: int, per_zone: int, misbehave: dict[int, list[str]] | None = None
) -> Cluster:
    """zones x per_zone fake observers of one SQL cluster (server i in zone i // per_zone + 1)."""
    out = Cluster()
    for i in range(zones * per_zone):
        zone = f"zone{i // per_zone + 1}"
        extra = (misbehave or {}).get(i, [])
        fake, pid = fakes.start(*extra, "--cluster-dir", str(cluster_dir), "--zone", zone)
        out.add(fake, pid, zone)
    return out
