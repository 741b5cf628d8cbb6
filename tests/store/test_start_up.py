"""Processes that start together on one database: compose starts `odiseo api` and
`odiseo worker` at the same moment, and each migrates and publishes its settings.

Found by scripts/container-smoke: on a fresh PostgreSQL the API died at start with
UniqueViolationError on enqueue_settings_pkey, because each process replaced the one
settings row with DELETE then INSERT, and two such transactions both inserted id 1.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from odiseo.domain.models import EnqueueSettings
from odiseo.storage.contract import Store
from odiseo.storage.tables import enqueue_settings


def settings(max_retries: int) -> EnqueueSettings:
    return EnqueueSettings(
        from_email="noreply@shop.example",
        from_name="Shop",
        allowed_senders=("@news.shop.example",),
        message_id_domain="shop.example",
        max_message_bytes=1 << 20,
        max_retries=max_retries,
    )


async def test_processes_publishing_their_settings_at_once_all_start(
    store: Store, more_stores: Callable[[], Store]
) -> None:
    stores = [store, *(more_stores() for _ in range(5))]
    for _ in range(3):  # on an empty table, then over the row the last round left
        await asyncio.gather(
            *(
                each.publish_enqueue_settings(settings(index), now=datetime.now(UTC))
                for index, each in enumerate(stores)
            )
        )
    async with store.db.read() as tx:  # type: ignore[attr-defined]
        rows = await tx.rows(select(enqueue_settings.c.id, enqueue_settings.c.max_retries))
    assert len(rows) == 1 and rows[0]["id"] == 1 and rows[0]["max_retries"] in range(len(stores))


@pytest.mark.parametrize("engine", ["sqlite"])
async def test_a_start_on_a_current_sqlite_schema_ignores_old_dangling_rows(
    store: Store, database_url: tuple[str, str]
) -> None:
    # SQLite migrates with foreign keys off and then checks them. That check ran at
    # every start, over the whole database, migration or not: an event row left by an
    # operator's sqlite3 shell (foreign keys off there by default) after deleting a
    # message stopped every `odiseo run` from starting, blamed on a migration.
    path = database_url[0].removeprefix("sqlite:///")
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.execute(
            "INSERT INTO email_events (email_id, at, kind) VALUES (999999, '2026-05-01', 'sent')"
        )
        db.commit()
    assert await store.migrate() == []  # nothing to migrate: it starts
