"""Adaptive throttling's shared back-off (both engines): one row per scope, one onset
(and one event) however many workers report the same throttle at once."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from odiseo.domain.models import EventFilter
from odiseo.domain.throttle import Policy, Scope, Signal
from odiseo.errors import TransientFailure
from odiseo.metrics import Metrics
from odiseo.storage.contract import Store
from odiseo.throttling import Throttling

T0 = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
POLICY = Policy(pause_seconds=30, max_pause_seconds=900)
GMAIL = Signal(scope=Scope.DOMAIN, domain="gmail.com", reply="450 4.7.28 rate limited")
RELAY = Signal(scope=Scope.RELAY, reply="421 4.7.0 Try again later")


async def test_many_workers_reporting_at_once_make_one_onset_and_one_event(
    store: Store, more_stores: Callable[[], Store]
) -> None:
    stores = [store, *(more_stores() for _ in range(3))]
    results = await asyncio.gather(
        *(s.limits.throttled(GMAIL, now=T0, policy=POLICY) for s in stores for _ in range(3))
    )
    assert sum(onset for _, onset in results) == 1
    assert {throttle.until for throttle, _ in results} == {T0 + timedelta(seconds=30)}
    found, _ = await store.outcomes.events(
        EventFilter(type="domain.throttled"), limit=10, before=None
    )
    assert len(found) == 1 and found[0].event.data["domain"] == "gmail.com"


async def test_scopes_are_kept_apart_and_read_while_slowed(store: Store) -> None:
    await store.limits.throttled(GMAIL, now=T0, policy=POLICY)
    await store.limits.throttled(RELAY, now=T0 + timedelta(seconds=20), policy=POLICY)
    slowed = await store.limits.throttles(now=T0 + timedelta(seconds=59))
    assert sorted((t.scope.value, t.domain) for t in slowed) == [
        ("domain", "gmail.com"), ("relay", "")
    ]  # fmt: skip
    later = await store.limits.throttles(now=T0 + timedelta(seconds=61))
    assert [(t.scope.value, t.domain) for t in later] == [("relay", "")]


async def test_a_repeat_while_recovering_doubles_the_pause_in_the_store(store: Store) -> None:
    first, _ = await store.limits.throttled(RELAY, now=T0, policy=POLICY)
    echo, onset = await store.limits.throttled(RELAY, now=T0 + timedelta(seconds=5), policy=POLICY)
    assert (echo, onset) == (first, False)
    repeat_at = T0 + timedelta(seconds=40)  # recovering
    repeat, onset = await store.limits.throttled(RELAY, now=repeat_at, policy=POLICY)
    assert onset and repeat.onsets == 2 and repeat.until == repeat_at + timedelta(seconds=60)
    found, _ = await store.outcomes.events(
        EventFilter(type="relay.throttled"), limit=10, before=None
    )
    assert [e.event.data["onsets"] for e in found] == [2, 1]


async def test_a_worker_whose_clock_steps_back_still_reads_the_shared_pauses(
    store: Store, more_stores: Callable[[], Store]
) -> None:
    # A worker reads the shared throttles at most once a second of its clock. When that
    # clock steps back (NTP corrects it by an hour), "a second since the last read" was
    # never true again until the clock caught up: for that hour the worker did not see
    # the pauses other workers recorded, and sent into them.
    throttling = Throttling(store.limits, metrics=Metrics())
    await throttling.refresh(T0 + timedelta(hours=1))
    assert throttling.relay(T0 + timedelta(hours=1)) is None
    # The clock steps back an hour; meanwhile another worker meets a throttle.
    await more_stores().limits.throttled(RELAY, now=T0, policy=POLICY)  # another worker
    await throttling.refresh(T0 + timedelta(seconds=2))
    relay = throttling.relay(T0 + timedelta(seconds=2))
    assert relay is not None and relay.paused(T0 + timedelta(seconds=2))


class _ReadThenWait:
    """The store's limits, with a read of the throttles that returns only when let go,
    after reading (a snapshot older than what is written meanwhile)."""

    def __init__(self, limits: Any) -> None:
        self.limits = limits
        self.read = asyncio.Event()
        self.go = asyncio.Event()

    async def throttles(self, *, now: datetime) -> Any:
        found = await self.limits.throttles(now=now)
        self.read.set()
        await self.go.wait()
        return found

    def __getattr__(self, name: str) -> Any:
        return getattr(self.limits, name)


async def test_a_throttle_met_while_the_worker_reads_the_table_is_not_forgotten(
    store: Store,
) -> None:
    # The claimer reads the table while a sender records a throttle reply: the read's
    # older snapshot replaced what the sender had just learned, and the worker went on
    # sending into the paused relay until its next read.
    limits = _ReadThenWait(store.limits)
    throttling = Throttling(limits, metrics=Metrics())
    reading = asyncio.create_task(throttling.refresh(T0))
    await limits.read.wait()
    failure = TransientFailure(
        "421 4.7.0 too many connections", code=421, stage="MAIL", reply="4.7.0 too many connections"
    )
    until = await throttling.report(failure, policy=POLICY, clock=lambda: T0)
    assert until == T0 + timedelta(seconds=30)
    limits.go.set()
    await reading
    relay = throttling.relay(T0 + timedelta(seconds=1))
    assert relay is not None and relay.paused(T0 + timedelta(seconds=1))
