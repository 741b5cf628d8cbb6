"""counts() answers from counters the database's triggers keep (migration 0011): after
any mix of operations, from any number of stores at once, they equal COUNT(*)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, func, select, update

from odiseo.domain.models import AttemptResult, EmailFilter, Outcome, Status
from odiseo.storage.contract import Store
from odiseo.storage.tables import emails
from tests.conftest import sqlalchemy_engine
from tests.support.factories import new_email

T0 = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
OUTCOMES = [Outcome.SENT, Outcome.RETRY, Outcome.FAILED, Outcome.SUPPRESSED]


async def counted(database_url: tuple[str, str]) -> dict[Status, int]:
    """COUNT(*) per status, the slow way, on a connection of its own."""
    engine = sqlalchemy_engine(*database_url)
    try:
        async with engine.connect() as conn:
            rows = (
                await conn.execute(select(emails.c.status, func.count()).group_by(emails.c.status))
            ).all()
    finally:
        await engine.dispose()
    found = {Status(status): n for status, n in rows}
    return {status: found.get(status, 0) for status in Status}


async def churn(store: Store, rng: random.Random, *, rounds: int, worker: str) -> None:
    """Enqueue, claim, record, release, cancel and requeue at random."""
    now = T0
    for _ in range(rounds):
        now += timedelta(seconds=1)
        later = now + timedelta(seconds=rng.choice([0, 0, 30]))
        await store.enqueue([new_email(send_at=later) for _ in range(rng.randint(1, 6))], now=now)
        claimed = await store.claim_due(
            limit=rng.randint(1, 5), worker=worker, lease_seconds=60, now=now
        )
        if not claimed:
            continue
        kept = claimed[: rng.randint(0, len(claimed))]
        results = [
            AttemptResult(
                email_id=m.id, message_id=m.message_id, attempt=m.attempts,
                outcome=rng.choice(OUTCOMES), started_at=now, finished_at=now,
                next_attempt_at=now + timedelta(seconds=5),
            )
            for m in kept
        ]  # fmt: skip
        await store.record_results(results, worker=worker, now=now)
        await store.release([m.id for m in claimed[len(kept) :]], worker=worker, now=now)
        if rng.random() < 0.3:
            await store.requeue_failed(now=now)


async def test_counts_equal_count_star_after_any_mix(
    store: Store, database_url: tuple[str, str]
) -> None:
    await churn(store, random.Random(7), rounds=40, worker="w")
    page, _ = await store.search(EmailFilter(status=Status.PENDING), limit=3, before=None)
    for message in page:
        await store.cancel(message.message_id, now=T0)
    counts = await store.counts()
    assert counts == await counted(database_url)
    assert sum(counts.values()) > 0 and counts[Status.CANCELLED] == len(page)


async def test_deletes_and_hand_written_sql_are_counted(
    store: Store, database_url: tuple[str, str]
) -> None:
    """A purge, or an UPDATE an operator runs by hand, keeps the counters right too."""
    await store.enqueue([new_email() for _ in range(10)], now=T0)
    engine = sqlalchemy_engine(*database_url)
    try:
        async with engine.begin() as conn:
            first = (await conn.execute(select(func.min(emails.c.id)))).scalar_one()
            await conn.execute(
                update(emails).where(emails.c.id < first + 4).values(status=Status.FAILED)
            )
            await conn.execute(delete(emails).where(emails.c.id == first))
            # An update that leaves the status alone changes nothing.
            await conn.execute(update(emails).values(priority=emails.c.priority))
    finally:
        await engine.dispose()
    assert await store.counts() == await counted(database_url)
    assert (await store.counts())[Status.FAILED] == 3


async def test_counters_hold_under_concurrent_stores(
    store: Store, more_stores: Callable[[], Store], database_url: tuple[str, str]
) -> None:
    stores = [store, more_stores(), more_stores(), more_stores()]
    await asyncio.gather(
        *(
            churn(s, random.Random(seed), rounds=15, worker=f"w{seed}")
            for seed, s in enumerate(stores)
        )
    )
    assert await store.counts() == await counted(database_url)
