"""Typed events and the suppression list, on both stores (the `store` fixture).

Every outcome is an event written with its state change, once however often the
write is retried; per-recipient refusals become email.bounced, bad addresses join
the suppression list, suppressed recipients come back with a claim and an enqueue.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

from odiseo.domain.events import EventType
from odiseo.domain.models import (
    AttemptResult,
    EventFilter,
    Outcome,
    QueuedEmail,
    Refusal,
    Status,
    Suppression,
    SuppressionReason,
)
from odiseo.storage.contract import Store
from tests.support.factories import new_email

T0 = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
GONE = Refusal(
    recipient="Gone@Example.com", code=550, response="550 5.1.1 no such user", permanent=True
)
POLICY = Refusal(
    recipient="picky@example.com", code=550, response="550 5.7.1 rejected by policy", permanent=True
)


def later(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


async def claim_one(store: Store, *, now: datetime = T0) -> QueuedEmail:
    (message,) = await store.claim_due(limit=1, worker="w", lease_seconds=60, now=now)
    return message


def result(message: QueuedEmail, outcome: Outcome, **extra: object) -> AttemptResult:
    return AttemptResult(
        email_id=message.id,
        message_id=message.message_id,
        attempt=message.attempts,
        outcome=outcome,
        started_at=later(1),
        finished_at=later(2),
        smtp_code=250 if outcome is Outcome.SENT else 451,
        response="250 ok" if outcome is Outcome.SENT else "451 try later",
        **extra,  # type: ignore[arg-type]
    )


async def all_events(store: Store, **query: object) -> list[tuple[str, str | None]]:
    page, _ = await store.outcomes.events(EventFilter(**query), limit=100, before=None)  # type: ignore[arg-type]
    return [(p.event.type or "", p.event.recipient) for p in reversed(page)]


async def test_a_sent_attempt_is_one_email_sent_event_marked_for_webhooks(store: Store) -> None:
    item = new_email(to=("a@example.com", "Gone@Example.com"), tags=("welcome",))
    await store.enqueue([item], now=T0)
    message = await claim_one(store)
    sent = result(message, Outcome.SENT, accepted=("a@example.com",), refused=(GONE,))
    for _ in range(3):  # a retried write logs nothing more
        await store.record_results([sent], worker="w", now=later(3))
    assert await all_events(store) == [
        ("email.sent", None),
        ("email.bounced", "Gone@Example.com"),
    ]
    page, _ = await store.outcomes.events(EventFilter(), limit=10, before=None)
    bounced, sent_event = page
    assert sent_event.message_id == item.email.message_id
    assert sent_event.recipients == ("a@example.com", "Gone@Example.com")
    assert sent_event.tags == ("welcome",)
    assert sent_event.event.data == {
        "accepted": ["a@example.com"],
        "refused": [{"recipient": "Gone@Example.com", "smtp_code": 550, "response": GONE.response}],
    }
    assert bounced.event.smtp_code == 550 and bounced.event.response == GONE.response
    stored = await store.get(item.email.message_id)
    assert stored is not None and stored.status is Status.SENT
    assert [e.type for e in stored.events] == ["email.sent", "email.bounced"]


async def test_a_bad_address_is_suppressed_and_a_policy_refusal_is_not(store: Store) -> None:
    item = new_email(to=("a@example.com", GONE.recipient, POLICY.recipient))
    await store.enqueue([item], now=T0)
    message = await claim_one(store)
    sent = result(message, Outcome.SENT, accepted=("a@example.com",), refused=(GONE, POLICY))
    await store.record_results([sent], worker="w", now=later(3))
    entry = await store.outcomes.suppression("gone@example.com")
    assert entry is not None
    assert entry.reason is SuppressionReason.HARD_BOUNCE
    assert entry.message_id == item.email.message_id and entry.detail == GONE.response
    assert await store.outcomes.suppression(POLICY.recipient) is None
    # Both refusals are bounces for the message; only one says the address is bad.
    assert [r for t, r in await all_events(store) if t == "email.bounced"] == [
        GONE.recipient,
        POLICY.recipient,
    ]


async def test_a_deferral_and_a_failure_are_typed_with_their_reason(store: Store) -> None:
    await store.enqueue([new_email()], now=T0)
    message = await claim_one(store)
    retry = result(message, Outcome.RETRY, next_attempt_at=later(300))
    await store.record_results([retry], worker="w", now=later(3))
    again = await claim_one(store, now=later(300))
    failed = result(again, Outcome.FAILED)
    await store.record_results([failed], worker="w", now=later(301))
    page, _ = await store.outcomes.events(EventFilter(), limit=10, before=None)
    assert [p.event.type for p in page] == ["email.failed", "email.deferred"]
    assert page[1].event.data == {
        "reason": "451 try later",
        "next_attempt_at": later(300).isoformat(),
    }
    assert page[0].event.data == {"reason": "451 try later", "refused": []}


async def test_claims_and_enqueues_name_suppressed_recipients(store: Store) -> None:
    entry = Suppression(address="Gone@Example.com", reason=SuppressionReason.MANUAL, created_at=T0)
    stored = await store.outcomes.suppress(entry)
    assert stored.address == "gone@example.com"
    item = new_email(to=("a@example.com",), cc=("GONE@example.com",))
    (enqueued,) = await store.enqueue([item], now=T0)
    assert enqueued.suppressed == ("GONE@example.com",)
    batch = [new_email(to=("gone@example.com",)) for _ in range(3)]
    assert [e.suppressed for e in await store.enqueue(batch, now=T0)] == [("gone@example.com",)] * 3
    claimed = await store.claim_due(limit=10, worker="w", lease_seconds=60, now=T0)
    assert [m.suppressed for m in claimed] == [("GONE@example.com",)] + [("gone@example.com",)] * 3


async def test_the_claim_reads_the_list_as_it_stands_then(store: Store) -> None:
    """The README's promise: an address removed after the enqueue gets the mail, one
    added after it does not."""
    manual = SuppressionReason.MANUAL
    await store.outcomes.suppress(Suppression(address="was@x.test", reason=manual, created_at=T0))
    removed, added = await store.enqueue(
        [new_email(to=("was@x.test",)), new_email(to=("now@x.test",))], now=T0
    )
    assert (removed.suppressed, added.suppressed) == (("was@x.test",), ())
    assert await store.outcomes.unsuppress("was@x.test")
    await store.outcomes.suppress(Suppression(address="now@x.test", reason=manual, created_at=T0))
    claimed = await store.claim_due(limit=10, worker="w", lease_seconds=60, now=T0)
    assert {m.email.to: m.suppressed for m in claimed} == {
        ("was@x.test",): (),
        ("now@x.test",): ("now@x.test",),
    }


async def test_every_recipient_suppressed_ends_the_message_suppressed(store: Store) -> None:
    await store.outcomes.suppress(
        Suppression(address="gone@example.com", reason=SuppressionReason.MANUAL, created_at=T0)
    )
    item = new_email(to=("gone@example.com",))
    await store.enqueue([item], now=T0)
    message = await claim_one(store)
    skipped = AttemptResult(
        email_id=message.id,
        message_id=message.message_id,
        attempt=message.attempts,
        outcome=Outcome.SUPPRESSED,
        started_at=later(1),
        finished_at=later(1),
        response="every recipient is on the suppression list",
        suppressed=message.suppressed,
    )
    await store.record_results([skipped], worker="w", now=later(2))
    await store.record_results([skipped], worker="w", now=later(2))
    stored = await store.get(item.email.message_id)
    assert stored is not None and stored.status is Status.SUPPRESSED
    assert await all_events(store) == [("email.suppressed", "gone@example.com")]
    assert (await store.counts())[Status.SUPPRESSED] == 1


async def test_a_suppressed_recipient_is_published_once_however_often_retried(
    store: Store,
) -> None:
    """Each attempt skips the recipient again; its email.suppressed is one event."""
    await store.outcomes.suppress(
        Suppression(address="gone@example.com", reason=SuppressionReason.MANUAL, created_at=T0)
    )
    await store.enqueue([new_email(to=("a@example.com", "gone@example.com"))], now=T0)
    message = await claim_one(store)
    retry = result(message, Outcome.RETRY, next_attempt_at=later(60), suppressed=message.suppressed)
    await store.record_results([retry], worker="w", now=later(3))
    again = await claim_one(store, now=later(60))
    assert again.suppressed == ("gone@example.com",)
    sent = result(again, Outcome.SENT, suppressed=again.suppressed)
    sent = dataclasses.replace(sent, started_at=later(61), finished_at=later(62))
    await store.record_results([sent], worker="w", now=later(63))
    assert await all_events(store) == [
        ("email.deferred", None),
        ("email.suppressed", "gone@example.com"),
        ("email.sent", None),
    ]


async def test_events_filter_by_type_message_recipient_and_time(store: Store) -> None:
    first, second = new_email(to=("x@example.com",)), new_email(to=("y@example.com",))
    await store.enqueue([first, second], now=T0)
    for message in await store.claim_due(limit=2, worker="w", lease_seconds=60, now=T0):
        outcome = Outcome.SENT if message.message_id == first.email.message_id else Outcome.RETRY
        await store.record_results(
            [result(message, outcome, next_attempt_at=later(600))], worker="w", now=later(3)
        )
    await store.cancel(second.email.message_id, now=later(4))
    assert await all_events(store, type="email.sent") == [("email.sent", None)]
    by_message = await all_events(store, message_id=second.email.message_id)
    assert by_message == [("email.deferred", None), ("email.cancelled", None)]
    assert await all_events(store, recipient="Y@example.com") == by_message
    assert await all_events(store, after=later(4)) == [("email.cancelled", None)]
    assert await all_events(store, before=later(4)) == [
        ("email.sent", None),
        ("email.deferred", None),
    ]


async def test_events_page_by_cursor_newest_first(store: Store) -> None:
    for _ in range(5):
        await store.outcomes.publish(EventType.WEBHOOK_TEST, data={"n": 1}, now=T0)
    seen: list[int] = []
    before = None
    while True:
        page, before = await store.outcomes.events(EventFilter(), limit=2, before=before)
        seen += [p.event.id for p in page]
        if before is None:
            break
    assert len(seen) == 5 and seen == sorted(seen, reverse=True)
    assert (await store.outcomes.events(EventFilter(), limit=1, before=None))[0][
        0
    ].message_id is None


async def test_suppressions_search_page_replace_and_remove(store: Store) -> None:
    for name in ("ann", "bob", "carl", "bobby"):
        await store.outcomes.suppress(
            Suppression(
                address=f"{name}@example.com", reason=SuppressionReason.MANUAL, created_at=T0
            )
        )
    found, after = await store.outcomes.suppressions(search="BOB", limit=1)
    assert [s.address for s in found] == ["bob@example.com"] and after == "bob@example.com"
    rest, after = await store.outcomes.suppressions(search="bob", limit=1, after=after)
    assert [s.address for s in rest] == ["bobby@example.com"] and after is None
    percent, _ = await store.outcomes.suppressions(search="%", limit=10)
    assert percent == []
    await store.outcomes.suppress(
        Suppression(
            address="ann@example.com", reason=SuppressionReason.COMPLAINT, created_at=later(9)
        )
    )
    ann = await store.outcomes.suppression("ANN@example.com")
    assert ann is not None and ann.reason is SuppressionReason.COMPLAINT
    assert await store.outcomes.unsuppress("Ann@Example.com")
    assert not await store.outcomes.unsuppress("ann@example.com")
    assert await store.outcomes.suppressed(["ann@example.com", "Carl@example.com"]) == {
        "carl@example.com"
    }


async def test_unsubscribe_suppresses_and_publishes_once(store: Store) -> None:
    item = new_email(to=("reader@example.com",))
    await store.enqueue([item], now=T0)
    await store.outcomes.unsubscribe(
        address="reader@example.com", message_id=item.email.message_id, now=later(5)
    )
    entry = await store.outcomes.suppression("reader@example.com")
    assert entry is not None and entry.reason is SuppressionReason.UNSUBSCRIBE
    assert await all_events(store) == [("email.unsubscribed", "reader@example.com")]
    # A message no longer stored: the address is still suppressed, with no event.
    await store.outcomes.unsubscribe(
        address="later@example.com", message_id="00000000-0000-4000-8000-000000000000", now=T0
    )
    assert await store.outcomes.suppressed(["later@example.com"]) == {"later@example.com"}
    assert len(await all_events(store)) == 1
