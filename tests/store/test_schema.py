"""The Alembic migrations produce exactly the schema tables.py declares."""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from odiseo.storage.store import EmailStore
from odiseo.storage.tables import metadata


async def test_migrations_match_the_table_definitions(store: EmailStore) -> None:
    def diff(sync_conn: Any) -> list[Any]:
        context = MigrationContext.configure(sync_conn, opts={"compare_type": True})
        return list(compare_metadata(context, metadata))

    async with store.engine.connect() as conn:
        differences = await conn.run_sync(diff)
    assert differences == []
