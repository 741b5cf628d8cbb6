"""Workers wake on new mail: LISTEN/NOTIFY across processes on PostgreSQL, in-process on SQLite."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime

from odiseo.storage.contract import Store
from tests.support.factories import new_email

LONG_POLL = 60.0  # far longer than the test may take: only a wake-up can end the wait early


async def test_enqueue_wakes_a_waiting_worker(
    store: Store, more_stores: Callable[[], Store], engine: str
) -> None:
    # On PostgreSQL the enqueue comes from another store (another process's connections);
    # SQLite wakes only workers in the enqueuing process, so it uses the same store.
    producer = more_stores() if engine == "postgres" else store
    await store.wait_for_work(0.01)  # start listening; the first call may return at once
    await store.wait_for_work(0.01)
    waiting = asyncio.create_task(store.wait_for_work(LONG_POLL))
    await asyncio.sleep(0.2)
    assert not waiting.done()
    await producer.enqueue([new_email()], now=datetime.now(UTC))
    await asyncio.wait_for(waiting, 20)  # returns on the notification, long before LONG_POLL
