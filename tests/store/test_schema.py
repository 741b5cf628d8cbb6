"""The Alembic migrations produce exactly the schema tables.py declares."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from odiseo.storage.contract import Store
from odiseo.storage.postgres import Q
from odiseo.storage.rows import to_row
from odiseo.storage.tables import INSERT_COLUMNS, WRITTEN_LATER, emails, metadata
from tests.conftest import sqlalchemy_engine
from tests.support.factories import new_email


async def test_migrations_match_the_table_definitions(
    store: Store, database_url: tuple[str, str]
) -> None:
    def diff(sync_conn: Any) -> list[Any]:
        context = MigrationContext.configure(sync_conn, opts={"compare_type": True})
        return list(compare_metadata(context, metadata))

    engine = sqlalchemy_engine(*database_url)
    try:
        async with engine.connect() as conn:
            differences = await conn.run_sync(diff)
    finally:
        await engine.dispose()
    assert differences == []


def test_an_enqueue_writes_every_column_but_those_filled_later() -> None:
    """A column added to tables.py is written by both engines or the suite says so:
    to_row gives exactly INSERT_COLUMNS, which with WRITTEN_LATER are the table's columns
    (PostgreSQL's INSERT, unnest() and COPY column lists are made from INSERT_COLUMNS)."""
    row = to_row(new_email(client_message_id="k", send_at=datetime(2030, 1, 1, tzinfo=UTC)),
                 now=datetime(2026, 1, 1, tzinfo=UTC))  # fmt: skip
    assert set(row) == set(INSERT_COLUMNS)
    assert set(INSERT_COLUMNS) | WRITTEN_LATER == {c.name for c in emails.c}
    assert not set(INSERT_COLUMNS) & WRITTEN_LATER
    assert all(f"{name}" in Q["insert_one"] for name in INSERT_COLUMNS)
