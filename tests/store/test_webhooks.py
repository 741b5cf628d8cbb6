"""The webhook verbs of the store, on SQLite and PostgreSQL: fan-out exactly once,
claims leased like emails, attempts recorded, endpoints disabled once."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from odiseo.domain.events import EventType
from odiseo.domain.models import AttemptResult, Outcome
from odiseo.domain.webhooks import Attempt, DeliveryStatus, Verdict
from odiseo.errors import InvalidTransition, NotFound
from odiseo.storage.contract import Store
from tests.support.factories import new_email

T0 = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)


def later(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


async def endpoint(store: Store, events: tuple[str, ...] = (), name: str = "a") -> str:
    created = await store.webhooks.create(
        f"wh_{name}",
        url=f"https://{name}.example.com/hook",
        description=None,
        events=events,
        secret=f"whsec_{name}",
        now=T0,
    )
    return created.id


async def test_endpoints_round_trip_without_their_secrets(store: Store) -> None:
    hooks = store.webhooks
    await endpoint(store, ("email.sent",))
    found = await hooks.get("wh_a")
    assert found is not None and found.events == ("email.sent",) and found.enabled
    assert found.secrets == () and "whsec" not in repr(found)
    assert [e.id for e in await hooks.endpoints()] == ["wh_a"]
    changed = await hooks.update(
        "wh_a", changes={"events": [], "url": "https://b.example/x"}, now=later(1)
    )
    assert changed.events == () and changed.url == "https://b.example/x"
    assert changed.updated_at == later(1)
    with pytest.raises(NotFound):
        await hooks.update("wh_nope", changes={"enabled": True}, now=T0)
    assert await hooks.delete("wh_a") and not await hooks.delete("wh_a")
    assert await hooks.get("wh_a") is None


async def test_fan_out_makes_one_delivery_per_wanting_endpoint_then_clears_the_marks(
    store: Store,
) -> None:
    hooks = store.webhooks
    await endpoint(store, name="all")
    await endpoint(store, ("webhook.test",), name="tests")
    await endpoint(store, ("email.sent",), name="sent")
    await hooks.update("wh_sent", changes={"enabled": False}, now=T0)  # disabled: none
    first = await store.outcomes.publish(EventType.WEBHOOK_DISABLED, data={"n": 1}, now=T0)
    second = await store.outcomes.publish(EventType.WEBHOOK_TEST, data={"n": 2}, now=T0)
    assert await hooks.fan_out(limit=100, now=later(1)) == 2
    assert await hooks.fan_out(limit=100, now=later(2)) == 0  # exactly once
    everything, _ = await hooks.deliveries("wh_all", limit=10, before=None)
    tests, _ = await hooks.deliveries("wh_tests", limit=10, before=None)
    assert [d.event_id for d in everything] == [second, first]  # newest first
    assert [d.event_id for d in tests] == [second]
    assert (await hooks.deliveries("wh_sent", limit=10, before=None))[0] == []
    ids = {d.webhook_id for d in everything + tests}
    assert len(ids) == 3 and all(i.startswith("msg_") for i in ids)


async def test_fan_out_without_endpoints_just_clears_the_marks(store: Store) -> None:
    await store.outcomes.publish(EventType.WEBHOOK_TEST, data={}, now=T0)
    assert await store.webhooks.fan_out(limit=10, now=T0) == 1
    await endpoint(store)
    assert await store.webhooks.fan_out(limit=10, now=T0) == 0
    assert (
        await store.webhooks.claim_deliveries(
            limit=10, per_endpoint=4, worker="w", lease_seconds=60, now=later(1)
        )
        == []
    )


async def test_concurrent_fan_outs_never_deliver_an_event_twice(
    store: Store, more_stores: Callable[[], Store]
) -> None:
    await endpoint(store)
    for n in range(60):
        await store.outcomes.publish(EventType.WEBHOOK_TEST, data={"n": n}, now=T0)
    others = [more_stores() for _ in range(3)]

    async def drain(s: Store) -> int:
        total = 0
        while taken := await s.webhooks.fan_out(limit=7, now=T0):
            total += taken
        return total

    counts = await asyncio.gather(*(drain(s) for s in [store, *others]))
    assert sum(counts) == 60
    page, _ = await store.webhooks.deliveries("wh_a", limit=100, before=None)
    assert len({d.event_id for d in page}) == len(page) == 60


async def test_the_payload_carries_the_message_it_is_about(store: Store) -> None:
    """The email.sent the store writes with an attempt's result is sent with the
    message's ids, tags, metadata and recipients, and the attempt's SMTP reply."""
    item = replace(new_email(client_message_id="c-1"), tags=("welcome",), metadata={"user": 7})
    (queued,) = await store.enqueue([item], now=T0)
    await endpoint(store)
    (message,) = await store.claim_due(limit=1, worker="w", lease_seconds=60, now=T0)
    sent = AttemptResult(
        email_id=message.id, attempt=1, outcome=Outcome.SENT, started_at=T0, finished_at=T0,
        smtp_code=250, response="250 ok", accepted=("user@example.com",),
    )  # fmt: skip
    await store.record_results([sent], worker="w", now=T0)
    await store.webhooks.fan_out(limit=10, now=T0)
    (claimed,) = await store.webhooks.claim_deliveries(
        limit=10, per_endpoint=4, worker="w", lease_seconds=60, now=T0
    )
    body = json.loads(claimed.payload)
    assert body["type"] == "email.sent" and body["timestamp"] == "2026-05-01T12:00:00Z"
    assert body["data"] | {"event_id": 0} == {
        "event_id": 0,
        "message_id": queued.message_id,
        "client_message_id": "c-1",
        "tags": ["welcome"],
        "metadata": {"user": 7},
        "recipients": ["user@example.com"],
        "smtp_code": 250,
        "response": "250 ok",
        "accepted": ["user@example.com"],
        "refused": [],
    }


async def test_claims_are_leased_and_bounded_per_endpoint(store: Store) -> None:
    hooks = store.webhooks
    await endpoint(store, name="a")
    await endpoint(store, name="b")
    for n in range(5):
        await store.outcomes.publish(EventType.WEBHOOK_TEST, data={"n": n}, now=T0)
    await hooks.fan_out(limit=100, now=T0)
    claim = hooks.claim_deliveries
    first = await claim(limit=100, per_endpoint=2, worker="w1", lease_seconds=60, now=T0)
    assert sorted(c.endpoint_id for c in first) == ["wh_a", "wh_a", "wh_b", "wh_b"]
    assert all(c.attempt == 1 and c.secrets == (f"whsec_{c.endpoint_id[3:]}",) for c in first)
    busy = await claim(
        limit=100, per_endpoint=2, busy=["wh_a"], worker="w2", lease_seconds=60, now=T0
    )
    assert {c.endpoint_id for c in busy} == {"wh_b"} and len(busy) == 2
    assert not {c.id for c in busy} & {c.id for c in first}
    # w1 dies: its leases run out and the same deliveries (same webhook-id) are due again.
    again = await claim(limit=100, per_endpoint=10, worker="w3", lease_seconds=60, now=later(61))
    retaken = {c.webhook_id: c.attempt for c in again}
    assert {c.webhook_id for c in first} <= set(retaken)
    assert all(retaken[c.webhook_id] == 2 for c in first)


async def test_a_result_applies_only_while_the_lease_is_held(store: Store) -> None:
    hooks = store.webhooks
    await endpoint(store)
    await store.outcomes.publish(EventType.WEBHOOK_TEST, data={}, now=T0)
    await hooks.fan_out(limit=10, now=T0)
    (late,) = await hooks.claim_deliveries(
        limit=1, per_endpoint=1, worker="slow", lease_seconds=10, now=T0
    )
    (current,) = await hooks.claim_deliveries(
        limit=1, per_endpoint=1, worker="fast", lease_seconds=10, now=later(11)
    )
    ok = Attempt(at=later(12), duration_ms=5, status_code=200, response="ok")
    done = Verdict(status=DeliveryStatus.SUCCEEDED)
    record = hooks.record_delivery
    await record(current, attempt=ok, verdict=done, worker="fast", disable_after=DAY, now=later(12))
    retry = Verdict(status=DeliveryStatus.PENDING, next_attempt_at=later(99))
    boom = Attempt(at=later(13), duration_ms=9, status_code=500, response="boom")
    await record(late, attempt=boom, verdict=retry, worker="slow", disable_after=DAY, now=later(13))
    (delivery,), _ = await hooks.deliveries("wh_a", limit=10, before=None)
    assert delivery.status is DeliveryStatus.SUCCEEDED and delivery.last_status_code == 200
    assert [a.status_code for a in delivery.history] == [200, 500]  # both attempts logged


async def test_410_and_long_failures_disable_once_with_an_event(store: Store) -> None:
    hooks = store.webhooks
    await endpoint(store, name="gone")
    await endpoint(store, name="down")
    await endpoint(store, ("webhook.disabled",), name="watcher")
    for n in range(2):
        await store.outcomes.publish(EventType.WEBHOOK_TEST, data={"n": n}, now=T0)
    await hooks.fan_out(limit=10, now=T0)
    claimed = await hooks.claim_deliveries(
        limit=10, per_endpoint=1, worker="w", lease_seconds=60, now=T0
    )
    by = {c.endpoint_id: c for c in claimed}
    record = hooks.record_delivery
    gone = Verdict(status=DeliveryStatus.FAILED, gone=True)
    answer = Attempt(at=T0, duration_ms=1, status_code=410)
    why = await record(
        by["wh_gone"], attempt=answer, verdict=gone, worker="w", disable_after=DAY, now=T0
    )
    assert why == "the receiver answered 410 Gone"
    retry = Verdict(status=DeliveryStatus.PENDING, next_attempt_at=later(5))
    refused = Attempt(at=T0, duration_ms=1, error="connection refused")
    args = {"attempt": refused, "verdict": retry, "worker": "w", "disable_after": DAY}
    assert await record(by["wh_down"], **args, now=T0) is None
    (again,) = await hooks.claim_deliveries(
        limit=10, per_endpoint=1, busy=["wh_watcher"], worker="w", lease_seconds=60, now=later(5)
    )
    assert await record(again, **args, now=T0 + DAY + timedelta(seconds=6)) is not None
    for name, reason in (("gone", "410 Gone"), ("down", "failing since")):
        found = await hooks.get(f"wh_{name}")
        assert found is not None and not found.enabled and reason in (found.disabled_reason or "")
        page, _ = await hooks.deliveries(f"wh_{name}", limit=10, before=None)
        assert all(d.status is DeliveryStatus.FAILED for d in page)  # nothing left pending
    await hooks.fan_out(limit=10, now=later(10))
    page, _ = await hooks.deliveries("wh_watcher", limit=10, before=None)
    disabled = [d for d in page if d.event_type == "webhook.disabled"]
    assert len(disabled) == 2  # one event per endpoint, to the endpoint still enabled


async def test_replays_resend_finished_deliveries_with_the_same_id(store: Store) -> None:
    hooks = store.webhooks
    await endpoint(store)
    await store.outcomes.publish(EventType.WEBHOOK_TEST, data={}, now=T0)
    await hooks.fan_out(limit=10, now=T0)
    (claimed,) = await hooks.claim_deliveries(
        limit=1, per_endpoint=1, worker="w", lease_seconds=60, now=T0
    )
    with pytest.raises(InvalidTransition):
        await hooks.replay("wh_a", claimed.id, now=T0)
    failed = Verdict(status=DeliveryStatus.FAILED)
    answer = Attempt(at=T0, duration_ms=1, status_code=400)
    await hooks.record_delivery(
        claimed, attempt=answer, verdict=failed, worker="w", disable_after=DAY, now=T0
    )
    assert await hooks.replay_failed("wh_a", since=later(1), now=later(2)) == 0
    assert await hooks.replay_failed("wh_a", since=T0, now=later(2)) == 1
    (again,) = await hooks.claim_deliveries(
        limit=1, per_endpoint=1, worker="w", lease_seconds=60, now=later(2)
    )
    assert (again.webhook_id, again.payload, again.attempt) == (
        claimed.webhook_id,
        claimed.payload,
        1,
    )
    with pytest.raises(NotFound):
        await hooks.replay("wh_other", claimed.id, now=T0)


async def test_rotation_signs_with_both_secrets_until_the_overlap_ends(store: Store) -> None:
    hooks = store.webhooks
    await endpoint(store)
    await hooks.rotate("wh_a", secret="whsec_new", overlap=DAY, now=T0)
    for n in range(2):
        await store.outcomes.publish(EventType.WEBHOOK_TEST, data={"n": n}, now=T0)
    await hooks.fan_out(limit=10, now=T0)
    claim = hooks.claim_deliveries
    (during,) = await claim(limit=1, per_endpoint=1, worker="w", lease_seconds=9, now=later(60))
    assert during.secrets == ("whsec_new", "whsec_a")
    (after,) = await claim(limit=1, per_endpoint=1, worker="w", lease_seconds=9, now=T0 + DAY)
    assert after.secrets == ("whsec_new",)


async def test_oldest_pending_and_a_test_delivery(store: Store) -> None:
    hooks = store.webhooks
    assert await hooks.oldest_pending_seconds(now=T0) == 0
    await endpoint(store)
    test = await hooks.send_test("wh_a", now=T0)
    assert test.status is DeliveryStatus.PENDING and test.event_type == "webhook.test"
    assert await hooks.oldest_pending_seconds(now=later(30)) == 30
    assert await hooks.fan_out(limit=10, now=T0) == 0  # a test goes to its endpoint only
    with pytest.raises(NotFound):
        await hooks.send_test("wh_nope", now=T0)
