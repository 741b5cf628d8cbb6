"""Sending limits shared through the store (both engines): tokens per batch from every
limit's current window, given back when unused, never more than the limit in a window."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from odiseo.domain.limits import domain_limits, relay_limits
from odiseo.storage.contract import Store

T0 = datetime(2026, 5, 1, 12, 0, 0, tzinfo=UTC)
LIMITS = relay_limits(per_second=10, per_minute=25, per_day=None)


async def test_tokens_come_from_every_window_and_stop_at_the_smallest(store: Store) -> None:
    take = store.limits.take
    assert (await take(LIMITS, want=8, now=T0)).count == 8
    assert (await take(LIMITS, want=8, now=T0)).count == 2  # the second's 10
    empty = await take(LIMITS, want=8, now=T0 + timedelta(milliseconds=500))
    assert empty.count == 0 and empty.retry_at == T0 + timedelta(seconds=1)
    next_second = T0 + timedelta(seconds=1)
    assert (await take(LIMITS, want=10, now=next_second)).count == 10
    third = await take(LIMITS, want=10, now=T0 + timedelta(seconds=2))
    assert third.count == 5  # the minute's 25
    blocked = await take(LIMITS, want=1, now=T0 + timedelta(seconds=3))
    assert blocked.count == 0 and blocked.retry_at == T0 + timedelta(minutes=1)
    assert (await take(LIMITS, want=3, now=T0 + timedelta(minutes=1))).count == 3


async def test_unused_tokens_go_back_to_their_window(store: Store) -> None:
    grant = await store.limits.take(LIMITS, want=10, now=T0)
    await store.limits.give_back(grant, 7)  # the claim found only 3 due
    assert (await store.limits.take(LIMITS, want=10, now=T0)).count == 7
    late = await store.limits.take(LIMITS, want=10, now=T0 + timedelta(seconds=5))
    await store.limits.give_back(grant, 3)  # an old window: nothing changes now
    assert (
        late.count == 10
        and (await store.limits.take(LIMITS, want=10, now=T0 + timedelta(seconds=5))).count == 0
    )


async def test_concurrent_workers_never_take_more_than_the_limit(
    store: Store, more_stores: Callable[[], Store]
) -> None:
    stores = [store, *(more_stores() for _ in range(4))]
    grants = await asyncio.gather(
        *(s.limits.take(LIMITS, want=4, now=T0) for s in stores for _ in range(3))
    )
    assert sum(g.count for g in grants) == 10


async def test_usage_is_what_the_current_window_has_taken(store: Store) -> None:
    gmail = domain_limits("gmail.com=5/min")
    assert await store.limits.usage((*LIMITS, *gmail), now=T0) == {
        "relay:1": 0,
        "relay:60": 0,
        "domain:gmail.com:60": 0,
    }
    await store.limits.take(LIMITS, want=4, now=T0)
    await store.limits.take(gmail, want=5, now=T0)
    later = T0 + timedelta(seconds=1)
    assert await store.limits.usage((*LIMITS, *gmail), now=later) == {
        "relay:1": 0,  # a new second
        "relay:60": 4,
        "domain:gmail.com:60": 5,
    }
    assert await store.limits.exhausted((*LIMITS, *gmail), now=later) == ["domain:gmail.com:60"]
    assert await store.limits.usage((), now=T0) == {}
