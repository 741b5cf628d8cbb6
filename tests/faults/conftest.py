"""Helpers of the fault-injection tests: bulk enqueue from the test, Message-ID bookkeeping."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from tests.conftest import open_test_store
from tests.support.factories import new_email
from tests.support.pgcluster import ThrowawayCluster, postgres_bin
from tests.support.smtp import Received


def enqueue_many(database: dict[str, str], count: int, *, chunk: int = 500) -> set[str]:
    """Queue `count` messages straight into the store; returns their RFC Message-IDs."""

    async def go() -> set[str]:
        store = open_test_store(database["DATABASE_URL"], database.get("SCHEMA_NAME", "unused"))
        try:
            await store.migrate()
            ids: set[str] = set()
            for start in range(0, count, chunk):
                items = [
                    new_email(to=f"user{i}@example.com")
                    for i in range(start, min(count, start + chunk))
                ]
                await store.enqueue(items, now=datetime.now(UTC))
                ids.update(item.email.rfc_message_id for item in items)
            return ids
        finally:
            await store.close()

    return asyncio.run(go())


def message_ids(received: list[Received]) -> Counter[str]:
    """How many times each Message-ID reached the SMTP server."""
    return Counter(str(r.message["Message-ID"]) for r in received)


@pytest.fixture
def cluster() -> Iterator[ThrowawayCluster]:
    """A PostgreSQL cluster of this test's own, which it may stop and start."""
    if postgres_bin() is None:
        pytest.fail("PostgreSQL server binaries (initdb) are needed for the outage tests")
    made = ThrowawayCluster().init()
    made.start()
    try:
        yield made
    finally:
        made.destroy()
