"""Migrations over stored data: down to 0008 (before events and suppressions) and back
up, on both engines, with messages and events of every kind in the database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from alembic import command
from sqlalchemy import text

from odiseo.domain.events import EventType
from odiseo.domain.models import (
    EventFilter,
    Outcome,
    Refusal,
    Status,
    Suppression,
)
from odiseo.domain.models import SuppressionReason as Reason
from odiseo.storage.contract import Store
from odiseo.storage.migrate import alembic_config
from tests.conftest import open_test_store, sqlalchemy_engine
from tests.store.test_events_and_suppressions import result
from tests.support.factories import new_email

T0 = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
# What the code of revision 0008 knows a message's status to be.
STATUSES_0008 = {"pending", "scheduled", "processing", "sent", "failed", "cancelled"}
GONE = Refusal(recipient="gone@example.com", code=550, response="550 5.1.1 no", permanent=True)


async def migrate(database_url: tuple[str, str], action: str, revision: str) -> None:
    engine = sqlalchemy_engine(*database_url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(lambda c: getattr(command, action)(alembic_config(c), revision))
    finally:
        await engine.dispose()


async def rows(database_url: tuple[str, str], sql: str) -> list[Any]:
    engine = sqlalchemy_engine(*database_url)
    try:
        async with engine.connect() as conn:
            return list((await conn.execute(text(sql))).all())
    finally:
        await engine.dispose()


async def fill(store: Store) -> None:
    """A sent message with a bounce, a suppressed one, a cancelled one, an unsubscribe
    and a system event."""
    await store.outcomes.suppress(
        Suppression(address="barred@example.com", reason=Reason.MANUAL, created_at=T0)
    )
    sent, barred, cancelled = (
        new_email(to=("a@example.com", GONE.recipient)),
        new_email(to=("barred@example.com",)),
        new_email(to=("c@example.com",), send_at=T0 + timedelta(days=1)),
    )
    await store.enqueue([sent, barred, cancelled], now=T0)
    await store.cancel(cancelled.email.message_id, now=T0)
    results = [
        result(message, Outcome.SUPPRESSED, suppressed=message.suppressed)
        if message.suppressed
        else result(message, Outcome.SENT, refused=(GONE,))
        for message in await store.claim_due(limit=5, worker="w", lease_seconds=60, now=T0)
    ]
    await store.record_results(results, worker="w", now=T0)
    await store.outcomes.unsubscribe(
        address="a@example.com", message_id=sent.email.message_id, now=T0
    )
    await store.outcomes.publish(EventType.WEBHOOK_TEST, data={}, now=T0)


async def test_down_to_0008_and_up_again_keeps_what_each_version_can_read(
    store: Store, database_url: tuple[str, str]
) -> None:
    await fill(store)
    assert (await store.counts())[Status.SUPPRESSED] == 1
    await store.close()

    await migrate(database_url, "downgrade", "0008")
    statuses = {r[0] for r in await rows(database_url, "SELECT status FROM emails")}
    assert statuses <= STATUSES_0008
    assert await rows(database_url, "SELECT id FROM email_events WHERE email_id IS NULL") == []

    await migrate(database_url, "upgrade", "heads")
    again = open_test_store(*database_url)
    try:
        counts = await again.counts()
        assert counts[Status.SENT] == counts[Status.CANCELLED] == counts[Status.FAILED] == 1
        page, _ = await again.outcomes.events(EventFilter(), limit=50, before=None)
        assert sorted(p.event.type or "" for p in page) == ["email.cancelled", "email.sent"]
        assert await again.outcomes.suppressions(limit=5) == ([], None)
        await again.enqueue([new_email(to=("barred@example.com",))], now=T0)
        (message,) = await again.claim_due(limit=5, worker="w", lease_seconds=60, now=T0)
        assert message.suppressed == ()
    finally:
        await again.close()
