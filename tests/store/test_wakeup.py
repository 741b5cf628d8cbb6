"""Workers wake on new mail: LISTEN/NOTIFY across processes on PostgreSQL, in-process on SQLite."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from datetime import UTC, datetime

import asyncpg
import pytest

from odiseo.storage.contract import Store
from tests.support.factories import new_email
from tests.support.postgres import TEST_DATABASE_URL

LONG_POLL = 60.0  # far longer than the test may take: only a wake-up can end the wait early


async def test_enqueue_wakes_a_waiting_worker(
    store: Store, more_stores: Callable[[], Store], engine: str
) -> None:
    # On PostgreSQL the enqueue comes from another store (another process's connections);
    # SQLite wakes only workers in the enqueuing process, so it uses the same store.
    producer = more_stores() if engine == "postgres" else store
    waiting = await a_waiting_worker(store)
    await producer.enqueue([new_email()], now=datetime.now(UTC))
    await asyncio.wait_for(waiting, 20)  # returns on the notification, long before LONG_POLL


async def a_waiting_worker(store: Store) -> asyncio.Task[None]:
    """A wait on `store` that has started listening and is still asleep."""
    await store.wait_for_work(0.01)  # start listening; the first call may return at once
    await store.wait_for_work(0.01)
    waiting = asyncio.create_task(store.wait_for_work(LONG_POLL))
    await asyncio.sleep(0.2)
    assert not waiting.done()
    return waiting


async def listening(schema: str) -> int:
    """How many sessions of the test server LISTEN on this schema's channel."""
    conn = await asyncpg.connect(TEST_DATABASE_URL, timeout=30)
    try:
        count = await conn.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE query = $1", f'LISTEN "odiseo_{schema}"'
        )
    finally:
        await conn.close()
    return int(count)


@pytest.mark.postgres
@pytest.mark.parametrize("engine", ["postgres"])
async def test_no_listening_connection_outlives_close(
    store: Store, more_stores: Callable[[], Store], database_url: tuple[str, str]
) -> None:
    """A wait cancelled at any point, or still running after close(), leaves no connection
    behind (it would warn as an unclosed socket when collected, in some later test)."""
    _, schema = database_url
    for step in range(40):  # cancelled while connecting, while asking LISTEN, while waiting
        worker = more_stores()
        waiting = asyncio.create_task(worker.wait_for_work(LONG_POLL))
        await asyncio.sleep(step * 0.0025)
        waiting.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await waiting
        await worker.close()
    assert await listening(schema) == 0
    await store.wait_for_work(0.01)
    assert await listening(schema) == 1  # what the count sees
    await store.close()
    await store.wait_for_work(0.01)  # after close(): it polls, opening nothing
    assert await listening(schema) == 0


async def test_a_worker_in_the_enqueuing_process_wakes_without_a_notification(
    store: Store, engine: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `odiseo run`: the API and the worker share one store. Its own commit wakes the
    # worker; no NOTIFY has to come back from the database first (none is sent here).
    if engine == "postgres":

        async def no_notify() -> None:
            return None

        monkeypatch.setattr(store, "_wake_soon", no_notify)
    waiting = await a_waiting_worker(store)
    await store.enqueue([new_email()], now=datetime.now(UTC))
    await asyncio.wait_for(waiting, 20)  # returns on the wake-up, long before LONG_POLL
