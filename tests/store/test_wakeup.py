"""Workers wake on new mail: LISTEN/NOTIFY across processes on PostgreSQL, in-process on SQLite."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime

import pytest

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


async def test_a_worker_in_the_enqueuing_process_wakes_without_a_notification(
    store: Store, engine: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `odiseo run`: the API and the worker share one store. Its own commit wakes the
    # worker; no NOTIFY has to come back from the database first (none is sent here).
    if engine == "postgres":

        async def no_notify() -> None:
            return None

        monkeypatch.setattr(store, "_wake_soon", no_notify)
    await store.wait_for_work(0.01)  # start listening; the first call may return at once
    await store.wait_for_work(0.01)
    waiting = asyncio.create_task(store.wait_for_work(LONG_POLL))
    await asyncio.sleep(0.2)
    assert not waiting.done()
    await store.enqueue([new_email()], now=datetime.now(UTC))
    await asyncio.wait_for(waiting, 20)  # returns on the wake-up, long before LONG_POLL
