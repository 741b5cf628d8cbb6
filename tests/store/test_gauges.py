"""store.gauges() (behind /metrics): the counts by status, the oldest due wait, the
oldest pending webhook delivery and the throttled scopes, read in one statement, agree
with the verbs that read each alone."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from odiseo.domain.models import AttemptResult, Outcome, Status
from odiseo.domain.throttle import Policy, Scope, Signal
from odiseo.storage.contract import Gauges, Store
from tests.support.factories import new_email

T0 = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
POLICY = Policy(pause_seconds=60, max_pause_seconds=900)


async def each_alone(store: Store, now: datetime) -> Gauges:
    throttles = await store.limits.throttles(now=now)
    return Gauges(
        counts=await store.counts(),
        oldest_due_seconds=await store.oldest_due_seconds(now=now),
        webhook_oldest_pending_seconds=await store.webhooks.oldest_pending_seconds(now=now),
        throttled=tuple(sorted((t.scope.value, t.domain) for t in throttles)),
    )


async def test_an_empty_store_has_zeros_for_every_status(store: Store) -> None:
    assert await store.gauges(now=T0) == Gauges(
        counts=dict.fromkeys(Status, 0),
        oldest_due_seconds=0.0,
        webhook_oldest_pending_seconds=0.0,
        throttled=(),
    )


async def test_the_gauges_agree_with_each_read_alone(store: Store) -> None:
    for priority, age in ((9, 600), (5, 300), (0, 120), (5, 60)):
        await store.enqueue([new_email(priority=priority)], now=T0 - timedelta(seconds=age))
    await store.enqueue([new_email(send_at=T0 + timedelta(hours=1))], now=T0)  # scheduled
    claimed = await store.claim_due(limit=2, worker="w", lease_seconds=60, now=T0)
    outcomes = ((Outcome.SENT, 250), (Outcome.FAILED, 550))
    results = [
        AttemptResult(email_id=m.id, attempt=m.attempts, outcome=outcome, started_at=T0,
                      finished_at=T0, smtp_code=code, response="r")
        for m, (outcome, code) in zip(claimed, outcomes, strict=True)
    ]  # fmt: skip
    await store.record_results(results, worker="w", now=T0)
    await store.webhooks.create(
        "wh_a", url="https://a.example.com/h", description=None, events=(), secret="whsec_a",
        now=T0,
    )  # fmt: skip
    await store.webhooks.send_test("wh_a", now=T0 - timedelta(seconds=30))
    gmail = Signal(scope=Scope.DOMAIN, domain="gmail.com", reply="450 4.7.28 rate limited")
    await store.limits.throttled(gmail, now=T0, policy=POLICY)
    relay = Signal(scope=Scope.RELAY, reply="421 4.7.0 Try again later")
    await store.limits.throttled(relay, now=T0 - timedelta(hours=1), policy=POLICY)  # over

    now = T0 + timedelta(seconds=5)
    gauges = await store.gauges(now=now)
    assert gauges.counts[Status.PENDING] == 2 and gauges.counts[Status.SCHEDULED] == 1
    assert gauges.counts[Status.SENT] == 1 and gauges.counts[Status.FAILED] == 1
    assert gauges.oldest_due_seconds == 605.0  # priority 9 of T0 - 600 s: claims took 0 and 5
    assert gauges.webhook_oldest_pending_seconds == 35.0
    assert gauges.throttled == (("domain", "gmail.com"),)
    for moment in (T0 - timedelta(hours=2), now, T0 + timedelta(hours=3)):
        found = await store.gauges(now=moment)
        assert replace(found, throttled=tuple(sorted(found.throttled))) == await each_alone(
            store, moment
        )
