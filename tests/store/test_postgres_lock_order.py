"""The PostgreSQL hot verbs (sql/postgres.sql) lock rows in one order: no deadlocks."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import asyncpg
import pytest

from odiseo.domain.models import AttemptResult, Outcome
from odiseo.storage.contract import Store
from odiseo.storage.postgres import PostgresStore
from tests.support.factories import new_email
from tests.support.postgres import TEST_DATABASE_URL


async def _wait_for_lock_waiters(monitor: asyncpg.Connection, count: int) -> None:
    """Until `count` odiseo backends wait on a lock (or 30 s pass: a loaded machine)."""
    for _ in range(600):
        waiting = await monitor.fetchval(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE application_name = 'odiseo' AND wait_event_type = 'Lock'"
        )
        if waiting >= count:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"expected {count} statements waiting on a lock")


@pytest.mark.parametrize("engine", ["postgres"])
async def test_record_and_extend_of_the_same_held_rows_do_not_deadlock(store: Store) -> None:
    """The worker runs EXTEND (heartbeat, every held id) and RECORD (a finished part of
    the batch, in completion order) at the same time on the same rows. EXTEND locks rows
    in scan order (ascending), RECORD in the order of its result array (the hash join
    probes unnest() in order), so the two can wait on each other. A third transaction
    holding one row only widens the window; without it, 200-row rounds of a concurrent
    extend + record deadlock in about 8 of 100 rounds on this server (the SQLAlchemy
    record_results, which locks with SELECT ... FOR UPDATE first, never did)."""
    assert isinstance(store, PostgresStore)
    pg_store = store
    now = datetime.now(UTC)
    count = 20  # a batch of 20: the planner joins by hashing the rows and probing unnest()
    await pg_store.enqueue([new_email(to=f"u{i}@example.com") for i in range(count)], now=now)
    claimed = await pg_store.claim_due(limit=count, worker="w", lease_seconds=60, now=now)
    ids = sorted(m.id for m in claimed)
    middle = ids[count // 2]
    results = [  # finished in reverse claim order (lanes, priorities); `middle` still in flight
        AttemptResult(
            email_id=email_id,
            attempt=1,
            outcome=Outcome.SENT,
            started_at=now,
            finished_at=now,
            smtp_code=250,
            response="250 ok",
        )
        for email_id in reversed(ids)
        if email_id != middle
    ]
    settings = {"search_path": pg_store.schema}
    other = await asyncpg.connect(TEST_DATABASE_URL, server_settings=settings)
    monitor = await asyncpg.connect(TEST_DATABASE_URL)
    try:
        holding = other.transaction()
        await holding.start()
        await other.execute("SELECT 1 FROM emails WHERE id = $1 FOR UPDATE", middle)

        extend = asyncio.ensure_future(
            pg_store.heartbeat(ids, worker="w", lease_seconds=60, now=now)
        )
        await _wait_for_lock_waiters(monitor, 1)  # EXTEND holds the ids below `middle`
        record = asyncio.ensure_future(pg_store.record_results(results, worker="w", now=now))
        await _wait_for_lock_waiters(monitor, 2)  # RECORD holds those above, waits for EXTEND
        await holding.commit()  # EXTEND takes `middle`, then needs a row RECORD holds

        outcomes = await asyncio.gather(extend, record, return_exceptions=True)
    finally:
        await other.close()
        await monitor.close()

    failures = [o for o in outcomes if isinstance(o, BaseException)]
    assert failures == [], f"one verb was aborted: {failures!r}"
    assert outcomes == [count, count - 1]
