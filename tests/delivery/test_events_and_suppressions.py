"""Events and suppression through a real SMTP server and the worker users run (both stores).

A 550 5.1.1 at RCPT suppresses that address, and the next send to it skips it with an
email.suppressed event; a 550 5.7.1 suppresses nobody; a message whose recipients are
all suppressed ends `suppressed` with no SMTP transaction at all.
"""

from __future__ import annotations

from odiseo.domain.models import EventFilter, Status, SuppressionReason
from odiseo.storage.contract import Store
from tests.delivery.test_worker_delivery import setup, stored
from tests.support.factories import new_email
from tests.support.smtp_harness import SmtpHarness, connections

GONE = "gone@example.com"
PICKY = "picky@example.com"


async def types(store: Store, message_id: str) -> list[tuple[str | None, str | None]]:
    message = await stored(store, message_id)
    return [(e.type, e.recipient) for e in message.events if e.type]


async def test_a_bad_mailbox_is_suppressed_and_skipped_next_time(
    smtp: SmtpHarness, store: Store
) -> None:
    server, worker, clock = setup(smtp, store)
    server.handler.rcpt_replies = {
        GONE: "550 5.1.1 <gone@example.com>: Recipient address rejected: User unknown",
        PICKY: "550 5.7.1 Message rejected due to content policy",
    }
    first = new_email(to=("ok@example.com", GONE, PICKY))
    (queued,) = await store.enqueue([first], now=clock.now)
    assert queued.suppressed == ()
    assert await worker.run_until_idle() == 1

    message = await stored(store, first.email.message_id)
    assert message.status is Status.SENT
    assert await types(store, first.email.message_id) == [
        ("email.sent", None),
        ("email.bounced", GONE),
        ("email.bounced", PICKY),
    ]
    sent = next(e for e in message.events if e.type == "email.sent")
    assert sent.data is not None and sent.data["accepted"] == ["ok@example.com"]
    entry = await store.outcomes.suppression(GONE)
    assert entry is not None and entry.reason is SuppressionReason.HARD_BOUNCE
    assert entry.message_id == first.email.message_id
    assert await store.outcomes.suppression(PICKY) is None  # policy: the message, not the address

    second = new_email(to=("ok@example.com", GONE))
    (queued,) = await store.enqueue([second], now=clock.now)
    assert queued.suppressed == (GONE,)
    assert await worker.run_until_idle() == 1
    assert [r.recipients for r in server.received][-1] == ["ok@example.com"]
    assert await types(store, second.email.message_id) == [
        ("email.sent", None),
        ("email.suppressed", GONE),
    ]


async def test_every_recipient_suppressed_is_never_tried(smtp: SmtpHarness, store: Store) -> None:
    server, worker, clock = setup(smtp, store)
    server.handler.rcpt_replies = {GONE: "550 5.1.1 no such user"}
    await store.enqueue([new_email(to=(GONE,))], now=clock.now)
    await worker.run_until_idle()  # every recipient refused: failed, and GONE suppressed
    opened = connections(server)
    only_gone = new_email(to=(GONE, "GONE@Example.com"))
    await store.enqueue([only_gone], now=clock.now)
    assert await worker.run_until_idle() == 0

    message = await stored(store, only_gone.email.message_id)
    assert message.status is Status.SUPPRESSED
    assert message.sent_at is None
    assert connections(server) == opened and len(server.received) == 0
    assert await types(store, only_gone.email.message_id) == [
        ("email.suppressed", GONE),
        ("email.suppressed", "GONE@Example.com"),
    ]
    failed, _ = await store.outcomes.events(EventFilter(type="email.failed"), limit=5, before=None)
    assert len(failed) == 1 and failed[0].recipients == (GONE,)
    assert (await store.counts())[Status.SUPPRESSED] == 1


async def test_the_enhanced_code_of_a_real_reply_decides(smtp: SmtpHarness, store: Store) -> None:
    """The provider stores "550 5.7.1 …": the 5.7.1 after the code is what classifies it,
    not the 550 nor the wording (no "policy" here, yet it is one)."""
    server, worker, clock = setup(smtp, store)
    denied, full, unknown = "denied@example.com", "full@example.com", "unknown@example.com"
    server.handler.rcpt_replies = {
        denied: "550 5.7.1 Access denied",
        full: "550 5.2.2 Mailbox full",
        unknown: "554 5.1.1 user unknown",
    }
    await store.enqueue([new_email(to=("ok@example.com", denied, full, unknown))], now=clock.now)
    assert await worker.run_until_idle() == 1
    listed, _ = await store.outcomes.suppressions(limit=10)
    assert [s.address for s in listed] == [unknown]
