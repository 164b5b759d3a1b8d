"""The inventory is refused when two servers (in any clusters) would stop the same observer, naming both,
and when a home path is not absolute, normalized, `/` or has control characters."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import tomli_w

from obstop.controller.errors import ConfigError
from obstop.controller.inventory import load_inventory


def server(id: int, host: str = "h1", ip: str = "10.0.0.1", home: str = "/home/admin/ob", **kw: Any) -> Any:
    return {"id": id, "zone": "z1", "host": host, "ip": ip, "home_path": home, **kw}


def write(tmp_path: Path, *clusters: list[dict[str, Any]]) -> Path:
    path = tmp_path / "inventory.toml"
    data = {
        "clusters": [
            {"id": i, "name": f"c{i}", "ob_cluster_id": i, "servers": servers}
            for i, servers in enumerate(clusters, start=1)
        ]
    }
    path.write_text(tomli_w.dumps(data))
    return path


@pytest.mark.parametrize(
    ("clusters", "words"),
    [
        (  # two clusters list the same observer (the issue: stopping cluster 2 killed cluster 1's)
            ([server(1)], [server(2, ip="10.0.0.2")]),
            ["cluster 1 server 1", "cluster 2 server 2", "share host h1 and home_path /home/admin/ob"],
        ),
        (
            ([server(1)], [server(2, host="h2", home="/home/b")]),
            ["cluster 1 server 1", "cluster 2 server 2", "share 10.0.0.1:2881"],
        ),
        (  # one server's SQL port is another's RPC port
            ([server(1), server(2, host="h2", home="/b", sql_port=2882, rpc_port=2883)],),
            ["cluster 1 server 1", "cluster 1 server 2", "share 10.0.0.1:2882"],
        ),
        (([server(1, sql_port=2881, rpc_port=2881)],), ["sql_port and rpc_port are both 2881"]),
    ],
)
def test_shared_observers_are_refused_naming_both(
    tmp_path: Path, clusters: tuple[list[dict[str, Any]], ...], words: list[str]
) -> None:
    path = write(tmp_path, *clusters)
    with pytest.raises(ConfigError) as err:
        load_inventory(path)
    message = str(err.value)
    assert str(path) in message and "\n" not in message
    for w in words:
        assert w in message


@pytest.mark.parametrize(
    ("home", "words"),
    [
        ("/", "must not be /"),
        ("relative/ob", "absolute"),
        ("/home/../etc", "normalized"),
        ("/home//ob", "normalized"),
        ("/home/./ob", "normalized"),
        ("/home/ob/", "normalized"),
        ("/home/ob\nrm -rf /", "control characters"),
        ("/home/ob\x1b[31m", "control characters"),
    ],
)
def test_home_path_rules(tmp_path: Path, home: str, words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        load_inventory(write(tmp_path, [server(1, home=home)]))


def test_distinct_observers_are_fine(tmp_path: Path) -> None:
    inv = load_inventory(
        write(
            tmp_path,
            [server(1), server(2, host="h1", home="/home/admin/ob2", sql_port=3881, rpc_port=3882)],
            [server(3, host="h2", ip="10.0.0.2")],
        )
    )
    assert [len(c.servers) for c in inv.clusters] == [2, 1]
