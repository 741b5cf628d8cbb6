"""Mail that came back, recorded on both stores (the `store` fixture): each notice an
event about its message, bad addresses and complaints suppressed in the same
transaction, the message found by our id, the relay's id or the Message-ID it quotes;
what matches nothing writes nothing, and unreadable mail is kept."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from odiseo.domain.bounces import Notice, NoticeKind, Returned
from odiseo.domain.events import EventType
from odiseo.domain.models import AttemptResult, EventFilter, Outcome, SuppressionReason
from odiseo.storage.contract import Store
from tests.support.factories import new_email

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
GONE = Notice(
    kind=NoticeKind.BOUNCED,
    recipient="Ana@Example.com",
    source="dsn",
    status="5.1.1",
    diagnostic="smtp; 550 5.1.1 no such user",
    suppress=True,
    detail={"remote_mta": "dns; mx.example.com"},
)


async def enqueue(store: Store, *recipients: str, **fields: Any) -> str:
    (done,) = await store.enqueue([new_email(to=recipients, **fields)], now=T0)
    return done.message_id


async def events(store: Store, message_id: str | None = None) -> list[Any]:
    page, _ = await store.outcomes.events(EventFilter(message_id=message_id), limit=50, before=None)
    return list(reversed(page))


async def test_a_bounce_is_an_event_and_a_suppression_in_one_write(store: Store) -> None:
    message_id = await enqueue(store, "ana@example.com", "bob@example.com")
    returned = Returned(notices=(GONE,), message_id=message_id)
    assert await store.outcomes.record_returned(returned, now=T0) == message_id
    (published,) = await events(store, message_id)
    event = published.event
    assert event.type == EventType.EMAIL_BOUNCED
    assert event.recipient == "ana@example.com"  # as the message spells it
    assert event.smtp_code == 550
    assert event.response == "smtp; 550 5.1.1 no such user"
    assert event.data == {
        "source": "dsn",
        "status": "5.1.1",
        "remote_mta": "dns; mx.example.com",
        "suppressed": True,
        "reported_recipient": "Ana@Example.com",
    }
    suppression = await store.outcomes.suppression("ANA@example.com")
    assert suppression is not None
    assert suppression.reason is SuppressionReason.HARD_BOUNCE
    assert suppression.message_id == message_id
    assert suppression.detail == "dsn: smtp; 550 5.1.1 no such user"
    assert await store.outcomes.suppression("bob@example.com") is None


async def test_delays_and_complaints(store: Store) -> None:
    message_id = await enqueue(store, "ana@example.com")
    delayed = Notice(kind=NoticeKind.DELAYED, recipient="ana@example.com", source="dsn")
    complained = Notice(
        kind=NoticeKind.COMPLAINED,
        recipient=None,  # redacted: the message's only recipient
        source="arf",
        suppress=True,
        detail={"feedback_type": "abuse"},
    )
    returned = Returned(notices=(delayed, complained), message_id=message_id)
    await store.outcomes.record_returned(returned, now=T0)
    found = [(p.event.type, p.event.recipient) for p in await events(store, message_id)]
    assert found == [
        (EventType.EMAIL_DELAYED, "ana@example.com"),
        (EventType.EMAIL_COMPLAINED, "ana@example.com"),
    ]
    suppression = await store.outcomes.suppression("ana@example.com")
    assert suppression is not None
    assert suppression.reason is SuppressionReason.COMPLAINT
    assert suppression.detail == "complaint (abuse) reported through arf"


async def test_an_earlier_suppression_is_kept(store: Store) -> None:
    message_id = await enqueue(store, "ana@example.com")
    complaint = Notice(
        kind=NoticeKind.COMPLAINED, recipient="ana@example.com", source="arf", suppress=True
    )
    await store.outcomes.record_returned(
        Returned(notices=(complaint,), message_id=message_id), now=T0
    )
    await store.outcomes.record_returned(Returned(notices=(GONE,), message_id=message_id), now=T0)
    suppression = await store.outcomes.suppression("ana@example.com")
    assert suppression is not None and suppression.reason is SuppressionReason.COMPLAINT
    assert len(await events(store, message_id)) == 2


async def test_a_recipient_the_message_never_had_suppresses_nobody(store: Store) -> None:
    message_id = await enqueue(store, "ana@example.com", "bob@example.com")
    stranger = Notice(
        kind=NoticeKind.BOUNCED, recipient="eve@example.com", source="dsn", suppress=True
    )
    await store.outcomes.record_returned(
        Returned(notices=(stranger,), message_id=message_id), now=T0
    )
    (published,) = await events(store, message_id)
    assert published.event.recipient == "eve@example.com"
    assert published.event.data is not None and published.event.data["suppressed"] is False
    assert await store.outcomes.suppression("eve@example.com") is None


async def test_found_by_the_relay_id_recorded_with_the_sent_outcome(store: Store) -> None:
    message_id = await enqueue(store, "ana@example.com")
    (claimed,) = await store.claim_due(limit=1, worker="w", lease_seconds=60, now=T0)
    sent = AttemptResult(
        email_id=claimed.id,
        message_id=message_id,
        attempt=claimed.attempts,
        outcome=Outcome.SENT,
        started_at=T0,
        finished_at=T0,
        smtp_code=250,
        response="250 Ok 0100018f-000000",
        accepted=("ana@example.com",),
        relay_message_id="0100018f-000000",
    )
    await store.record_results([sent], worker="w", now=T0)
    by_relay = Returned(notices=(GONE,), relay_message_id="0100018f-000000")
    assert await store.outcomes.record_returned(by_relay, now=T0) == message_id
    unknown = Returned(notices=(GONE,), relay_message_id="0100018f-999999")
    assert await store.outcomes.record_returned(unknown, now=T0) is None


async def test_found_by_the_message_id_it_quotes(store: Store) -> None:
    ours = await enqueue(store, "ana@example.com")
    theirs = await enqueue(
        store, "ana@example.com", rfc_message_id="<20261201.app-42@app.example.com>"
    )
    quoting_ours = Returned(notices=(GONE,), rfc_message_id=f"<{ours}@odiseo.test>")
    assert await store.outcomes.record_returned(quoting_ours, now=T0) == ours
    quoting_theirs = Returned(notices=(GONE,), rfc_message_id="<20261201.app-42@app.example.com>")
    assert await store.outcomes.record_returned(quoting_theirs, now=T0) == theirs
    # Our id under another domain is not our Message-ID.
    spoofed = Returned(notices=(GONE,), rfc_message_id=f"<{ours}@elsewhere.test>")
    assert await store.outcomes.record_returned(spoofed, now=T0) is None


async def test_what_matches_nothing_writes_nothing(store: Store) -> None:
    await enqueue(store, "ana@example.com")
    for returned in (
        Returned(notices=(GONE,), message_id="00000000-0000-4000-8000-000000000000"),
        Returned(notices=(GONE,), rfc_message_id="<nobody@nowhere.test>"),
        Returned(notices=(GONE,), rfc_message_id="<" + "x" * 300 + ">"),
        Returned(notices=(GONE,)),
    ):
        assert await store.outcomes.record_returned(returned, now=T0) is None
    assert await events(store) == []
    assert await store.outcomes.suppression("ana@example.com") is None


async def test_unreadable_mail_is_kept_as_an_event(store: Store) -> None:
    message_id = await enqueue(store, "ana@example.com")
    data = {"reason": "not a report", "source": "smtp", "raw": "Subject: hi\r\n\r\nhello"}
    await store.outcomes.keep_unparsed(data=data, message_id=message_id, now=T0)
    await store.outcomes.keep_unparsed(data=data, message_id=None, now=T0)
    about, loose = await events(store)
    assert about.event.type == loose.event.type == EventType.INBOUND_UNPARSED
    assert about.message_id == message_id and about.event.data == data
    assert loose.message_id is None and loose.event.data == data
