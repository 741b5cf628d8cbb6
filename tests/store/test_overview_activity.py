"""The overview's charts on both stores: the counts the cache of settled minutes and
hours gives are the ones a fresh read of every event gives, view after view, while a
view reads only the minutes not settled yet."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

from odiseo.domain.models import Outcome
from odiseo.operations import CHARTED, Activity, Series
from odiseo.storage.contract import Store
from tests.store.test_events_and_suppressions import result as made
from tests.support.factories import new_email

T0 = datetime(2026, 5, 1, 12, 0, 30, tzinfo=UTC)


async def sent_at(store: Store, at: datetime, outcome: Outcome = Outcome.SENT) -> None:
    """One message whose attempt ends at `at` (an email.sent or email.deferred)."""
    await store.enqueue([new_email()], now=at - timedelta(seconds=2))
    (message,) = await store.claim_due(limit=1, worker="w", lease_seconds=60, now=at)
    result = dataclasses.replace(made(message, outcome), started_at=at, finished_at=at)
    await store.record_results([result], worker="w", now=at)


def totals(series: Series) -> dict[str, int]:
    return {kind: sum(counts) for kind, counts in series.counts.items()}


async def test_cached_charts_match_a_fresh_read_view_after_view(store: Store) -> None:
    cached = Activity(store)
    for ago in (timedelta(hours=30), timedelta(hours=5), timedelta(minutes=90),
                timedelta(minutes=30), timedelta(minutes=2), timedelta(0)):  # fmt: skip
        await sent_at(store, T0 - ago)
    await sent_at(store, T0 - timedelta(hours=3), Outcome.RETRY)
    hour, day = await cached.charts(now=T0)
    assert totals(hour)["email.sent"] == 3  # 30 and 2 minutes ago, and now
    assert totals(day) == {"email.sent": 5, "email.deferred": 1, "email.failed": 0}
    for seconds in (0, 20, 400, 3000, 7300, 12000, 90000):
        now = T0 + timedelta(seconds=seconds)
        if seconds:
            await sent_at(store, now - timedelta(seconds=10))  # just before this view
        hour, day = await cached.charts(now=now)
        fresh = await Activity(store).charts(now=now)
        assert hour == fresh[0], seconds
        assert day == fresh[1], seconds
        assert len(hour.starts) == 60 and len(day.starts) == 24
        assert hour.starts[-1] <= now < hour.starts[-1] + timedelta(minutes=1)
        assert day.starts[-1] <= now < day.starts[-1] + timedelta(hours=1)


async def test_a_view_reads_only_the_minutes_not_settled(store: Store) -> None:
    """Settled spans are kept, not read again: an event written late into one (which
    events never are) shows only to a process that has not read it yet."""
    cached = Activity(store)
    await sent_at(store, T0 - timedelta(hours=2))
    await cached.charts(now=T0)
    await sent_at(store, T0 - timedelta(hours=3))  # late, into a settled hour
    await sent_at(store, T0 - timedelta(minutes=20))  # late, into a settled minute
    await sent_at(store, T0 - timedelta(minutes=3))  # into a minute not settled yet
    hour, day = await cached.charts(now=T0 + timedelta(seconds=5))
    assert totals(hour)["email.sent"] == 1 and totals(day)["email.sent"] == 2
    hour, day = await Activity(store).charts(now=T0 + timedelta(seconds=5))
    assert totals(hour)["email.sent"] == 2 and totals(day)["email.sent"] == 4


async def test_activity_counts_one_row_per_type_and_span(store: Store) -> None:
    for seconds in (0, 10, 25):  # one minute (12:00), three distinct seconds
        await sent_at(store, T0 + timedelta(seconds=seconds))
    found = await store.operations.activity(CHARTED, since=T0, span_seconds=60)
    assert [(c.type, c.start, c.count) for c in found] == [
        ("email.sent", datetime(2026, 5, 1, 12, 0, tzinfo=UTC), 3)
    ]
    before = await store.operations.activity(
        CHARTED, since=T0 - timedelta(hours=1), until=T0 + timedelta(seconds=5), span_seconds=60
    )
    assert [c.count for c in before] == [1]
