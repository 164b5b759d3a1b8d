"""The store on real database files: the migrations make exactly the models' schema; a store's id."""

from __future__ import annotations

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from obstop.controller.store import Store
from obstop.controller.store.models import Base


async def test_migrations_equal_models(store_url: str) -> None:
    store = await Store.open(store_url)
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
