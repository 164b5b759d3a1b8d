"""Config and inventory are refused at start with a message naming the file, the cluster and the field."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from obstop.controller.config import load_config
from obstop.controller.errors import ConfigError
from obstop.controller.inventory import load_inventory
from obstop.controller.store import Store
from obstop.controller.store.models import Base

GOOD_SERVER = (
    '{ id = 5, zone = "zone1", host = "h1", ip = "127.0.0.11", home_path = "/home/admin/oceanbase" }'
)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        (
            "[[clusters]]\nid = 1\nname = 'c'\nob_cluster_id = 2\nservers = [{ id = 5, zone = 'z', host = 'h1', "
            "ip = '1.2.3.4' }]",
            ["cluster #1", "id 1", "name c", "servers.0.home_path", "Field required"],
        ),
        ("[[clusters]]\nid = 1\nname = 'c'\nob_cluster_id = 2\nservers = []", ["servers", "at least 1"]),
        (
            f"[[clusters]]\nid = 'x'\nname = 'c'\nob_cluster_id = 2\nservers = [{GOOD_SERVER}]",
            ["id: Input should be"],
        ),
        (
            f"[[clusters]]\nid = 1\nname = 'a'\nob_cluster_id = 2\nservers = [{GOOD_SERVER}]\n"
            f"[[clusters]]\nid = 1\nname = 'b'\nob_cluster_id = 3\nservers = []",
            ["cluster #2"],
        ),
        (
            f"[[clusters]]\nid = 1\nname = 'a'\nob_cluster_id = 2\nservers = [{GOOD_SERVER}]\n"
            f"[[clusters]]\nid = 2\nname = 'b'\nob_cluster_id = 3\nservers = [{GOOD_SERVER}]",
            ["server id 5"],
        ),
        ("[[clusters]\n", ["inventory"]),
    ],
)
def test_malformed_inventory_is_refused(tmp_path: Path, text: str, words: list[str]) -> None:
    path = tmp_path / "inventory.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_inventory(path)
    assert str(path) in str(err.value)
    for w in words:
        assert w in str(err.value)


def test_config_relative_paths_and_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "controller.toml"
    path.write_text('inventory = "inv.toml"\n[store]\nurl = "sqlite:///state/c.db"\n')
    monkeypatch.setenv("OBSTOP_API__LISTEN", "127.0.0.1:9999")
    cfg = load_config(path)
    assert cfg.inventory == tmp_path / "inv.toml"
    assert cfg.store.url == f"sqlite:///{tmp_path}/state/c.db"
    assert cfg.api.host_port == ("127.0.0.1", 9999)


def test_bad_config_names_the_field(tmp_path: Path) -> None:
    path = tmp_path / "controller.toml"
    path.write_text('[[api.users]]\nname = "a"\npassword_hash = "plain-text"\n')
    with pytest.raises(ConfigError, match=r"api\.users\.0\.password_hash"):
        load_config(path)


async def test_migrations_equal_models(tmp_path: Path) -> None:
    store = await Store.open(f"sqlite:///{tmp_path}/m.db")
    try:
        async with store.db.engine.connect() as conn:
            diff = await conn.run_sync(
                lambda c: compare_metadata(MigrationContext.configure(c), Base.metadata)
            )
        assert diff == []
        await store.db.migrate()  # idempotent
    finally:
        await store.close()


async def test_store_id_is_stable_and_unique(tmp_path: Path) -> None:
    """Command ids carry it: a controller on a new store never repeats an id an agent has journalled."""
    a = await Store.open(f"sqlite:///{tmp_path}/a.db")
    b = await Store.open(f"sqlite:///{tmp_path}/b.db")
    again = await Store.open(f"sqlite:///{tmp_path}/a.db")
    try:
        assert a.id and a.id != b.id and again.id == a.id
    finally:
        for s in (a, b, again):
            await s.close()
