"""HTTP Basic never crosses a network in clear: refused over plain HTTP on a listener that is not loopback,
unless the config says a TLS proxy stands in front (allow_basic_over_http)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.controller import ADMIN, running, write_config
from tests.support.fakes import Fakes, start_cluster


@pytest.mark.parametrize(
    ("listen", "allow", "status"),
    [("0.0.0.0:8080", False, 403), ("0.0.0.0:8080", True, 200), ("127.0.0.1:8080", False, 200)],
)
async def test_basic_over_plain_http(
    tmp_path: Path, fakes: Fakes, listen: str, allow: bool, status: int
) -> None:
    api = {"listen": listen, "allow_basic_over_http": allow}
    cluster = start_cluster(fakes, 1, 1)
    async with running(write_config(tmp_path, cluster, f"sqlite:///{tmp_path}/c.db", api=api)) as env:
        r = await env.client.get("/api/v2/ob/clusters", headers=ADMIN)
        assert r.status_code == status, r.text
        if status == 403:
            error = r.json()["error"]
            assert error["code"] == 10103 and "tls_cert" in error["message"], error
            # what needs no credentials is still served
            assert (await env.client.get("/api/status")).status_code == 200
