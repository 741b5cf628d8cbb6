"""Retention and data protection on both stores: purge, redaction after sending,
erasure of an address, the audit log; and the housekeeper that purges beside a worker."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from odiseo.domain.models import (
    Attachment,
    AttemptResult,
    EventFilter,
    Outcome,
    QueuedEmail,
    Status,
    Suppression,
    SuppressionReason,
)
from odiseo.housekeeping import Housekeeper
from odiseo.storage.contract import Store
from tests.support.factories import new_email

T0 = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
FILE = Attachment(filename="a.txt", content_type="text/plain", data=b"secret")


def sent(message: QueuedEmail, at: datetime) -> AttemptResult:
    return AttemptResult(
        email_id=message.id, message_id=message.message_id, attempt=message.attempts,
        outcome=Outcome.SENT, started_at=at, finished_at=at, smtp_code=250, response="250 ok",
    )  # fmt: skip


async def send_all(store: Store, *, at: datetime, redact: bool = False) -> None:
    claimed = await store.claim_due(limit=100, worker="w", lease_seconds=60, now=at)
    await store.record_results([sent(m, at) for m in claimed], worker="w", now=at, redact=redact)


async def test_purge_takes_only_finished_messages_older_than_the_cut(store: Store) -> None:
    old = [new_email(attachments=(FILE,)) for _ in range(5)]
    await store.enqueue(old, now=T0)
    await send_all(store, at=T0)
    waiting = new_email(send_at=T0 + timedelta(days=99))
    await store.enqueue([waiting], now=T0)  # old, but still waiting: never purged
    recent = new_email()
    await store.enqueue([recent], now=T0 + timedelta(days=9))
    await send_all(store, at=T0 + timedelta(days=9))

    cut = T0 + timedelta(days=5)
    assert await store.retention.purgeable(before=cut) == 5
    assert await store.retention.purge(before=cut, limit=2) == 2
    assert await store.retention.purge(before=cut, limit=10) == 3
    assert await store.retention.purge(before=cut, limit=10) == 0
    assert await store.get(old[0].email.message_id) is None
    assert await store.get(waiting.email.message_id) is not None
    assert await store.get(recent.email.message_id) is not None
    counts = await store.counts()
    assert (counts[Status.SENT], counts[Status.SCHEDULED]) == (1, 1)
    events, _ = await store.outcomes.events(EventFilter(), limit=50, before=None)
    assert [e.message_id for e in events] == [recent.email.message_id]


async def test_redaction_keeps_the_history_and_drops_the_content(store: Store) -> None:
    item = new_email(attachments=(FILE,), text="plain words")
    await store.enqueue([item], now=T0)
    await send_all(store, at=T0, redact=True)
    stored = await store.get(item.email.message_id)
    assert stored is not None and stored.status is Status.SENT
    assert (stored.email.html, stored.email.text, stored.email.attachments) == (None, None, ())
    assert stored.email.subject == item.email.subject and stored.email.to == item.email.to
    assert [e.type for e in stored.events] == ["email.sent"]
    kept = new_email(attachments=(FILE,))
    await store.enqueue([kept], now=T0)
    await send_all(store, at=T0)  # not asked: nothing dropped
    again = await store.get(kept.email.message_id)
    assert again is not None and again.email.attachments == (FILE,)


async def test_erasure_removes_everything_about_one_address(store: Store) -> None:
    mine = new_email(to=("Zoe@Example.com",))
    copied = new_email(to=("other@example.com",), cc=("zoe@example.com",))
    unrelated = new_email(to=("other@example.com",))
    await store.enqueue([mine, copied, unrelated], now=T0)
    await store.outcomes.suppress(
        Suppression(address="zoe@example.com", reason=SuppressionReason.MANUAL, created_at=T0)
    )
    await store.retention.audit(
        at=T0, actor="key#1", action="PUT /suppressions/{address}",
        target="/suppressions/zoe@example.com", status_code=200,
    )  # fmt: skip
    erased = await store.retention.erase(" ZOE@example.com ")
    assert (erased.messages, erased.suppression) == (2, True)
    assert await store.get(mine.email.message_id) is None
    assert await store.get(copied.email.message_id) is None
    assert await store.get(unrelated.email.message_id) is not None
    assert await store.outcomes.suppression("zoe@example.com") is None
    (entry,), _ = await store.retention.audit_entries(limit=10, before=None)
    assert entry.target == "[erased]" and entry.actor == "key#1"


async def test_the_housekeeper_purges_beside_a_worker_and_stops(store: Store) -> None:
    await store.enqueue([new_email() for _ in range(3)], now=T0)
    await send_all(store, at=T0)
    keeper = Housekeeper(
        retention=store.retention, days=2, clock=lambda: T0 + timedelta(days=3), interval=0.05
    )
    task = asyncio.create_task(keeper.run())
    for _ in range(600):  # up to 30 s on a loaded machine
        if (await store.counts())[Status.SENT] == 0:
            break
        await asyncio.sleep(0.05)
    keeper.stop()
    await asyncio.wait_for(task, 30)
    assert (await store.counts())[Status.SENT] == 0
