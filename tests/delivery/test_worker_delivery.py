"""The worker delivering through a real SMTP server into a real store (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from odiseo.domain.models import QueuedEmail, Status
from odiseo.providers.smtp import SmtpProvider
from odiseo.storage.contract import Store
from odiseo.worker import Worker, WorkerOptions
from tests.support.factories import new_email
from tests.support.smtp import SmtpServer
from tests.support.smtp_harness import SmtpHarness, connections

T0 = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
BACKOFF = 60.0


class Clock:
    """A settable clock for the worker: time moves only when a test says so."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def make_worker(store: Store, provider: SmtpProvider, clock: Clock) -> Worker:
    options = WorkerOptions(
        batch_size=10, lease_seconds=30, poll_interval=0.1, backoff_seconds=BACKOFF
    )
    return Worker(store=store, provider=provider, options=options, name="test-worker", clock=clock)


async def stored(store: Store, message_id: str) -> QueuedEmail:
    message = await store.get(message_id)
    assert message is not None
    return message


def setup(smtp: SmtpHarness, store: Store) -> tuple[SmtpServer, Worker, Clock]:
    server = smtp.server()
    clock = Clock(T0)
    return server, make_worker(store, smtp.provider(server.port), clock), clock


async def test_a_delivered_message_is_sent_with_its_event(store: Store, smtp: SmtpHarness) -> None:
    server, worker, _clock = setup(smtp, store)
    item = new_email(to="someone@example.com")
    (enqueued,) = await store.enqueue([item], now=T0)

    assert await worker.run_until_idle() == 1

    message = await stored(store, enqueued.message_id)
    assert message.status is Status.SENT
    assert message.attempts == 1
    assert message.sent_at == T0
    assert message.last_error is None
    assert message.locked_by is None
    (event,) = message.events
    assert (event.kind, event.attempt, event.smtp_code) == ("sent", 1, 250)
    assert event.response is not None and event.response.startswith("250 ")
    assert event.worker == "test-worker"
    (got,) = server.received
    assert got.recipients == ["someone@example.com"]
    assert got.message["Message-ID"] == item.email.rfc_message_id


async def test_a_batch_goes_over_one_connection_and_failures_stay_per_message(
    store: Store, smtp: SmtpHarness
) -> None:
    server, worker, _clock = setup(smtp, store)
    server.handler.rcpt_replies = {"gone@example.com": "550 5.1.1 No such user"}
    items = [new_email(to=f"user{i}@example.com") for i in range(4)]
    items.insert(2, new_email(to="gone@example.com"))
    await store.enqueue(items, now=T0)

    assert await worker.run_until_idle() == 4

    statuses = [(await stored(store, i.email.message_id)).status for i in items]
    assert statuses == [Status.SENT, Status.SENT, Status.FAILED, Status.SENT, Status.SENT]
    assert len(server.received) == 4
    assert connections(server) == 1


async def test_a_451_is_retried_after_the_backoff_then_sent(
    store: Store, smtp: SmtpHarness
) -> None:
    server, worker, clock = setup(smtp, store)
    server.handler.data_reply = "451 4.3.0 Temporary local problem"
    (enqueued,) = await store.enqueue([new_email()], now=T0)

    assert await worker.run_until_idle() == 0

    message = await stored(store, enqueued.message_id)
    assert message.status is Status.SCHEDULED
    assert message.attempts == 1
    assert message.next_attempt_at == T0 + timedelta(seconds=BACKOFF)
    assert message.last_error is not None and "451" in message.last_error
    assert "Temporary local problem" in message.last_error
    assert [(e.kind, e.smtp_code) for e in message.events] == [("retry", 451)]

    # Not due yet: nothing happens just before the backoff ends.
    server.handler.data_reply = None
    clock.advance(BACKOFF - 1)
    assert await worker.run_until_idle() == 0
    assert (await stored(store, enqueued.message_id)).status is Status.SCHEDULED
    assert server.received == []

    clock.advance(2)
    assert await worker.run_until_idle() == 1

    message = await stored(store, enqueued.message_id)
    assert message.status is Status.SENT
    assert message.attempts == 2
    assert message.sent_at == T0 + timedelta(seconds=BACKOFF + 1)
    assert message.last_error is None
    assert [(e.kind, e.attempt, e.smtp_code) for e in message.events] == [
        ("retry", 1, 451),
        ("sent", 2, 250),
    ]
    assert len(server.received) == 1


async def test_a_wait_stated_by_the_server_outlasts_the_backoff(
    store: Store, smtp: SmtpHarness
) -> None:
    server, worker, clock = setup(smtp, store)
    server.handler.data_reply = "450 4.2.0 Greylisted, please try again in 300 seconds"
    (enqueued,) = await store.enqueue([new_email()], now=T0)

    await worker.run_until_idle()

    message = await stored(store, enqueued.message_id)
    assert message.status is Status.SCHEDULED
    assert message.next_attempt_at == T0 + timedelta(seconds=300)  # not T0 + BACKOFF
    server.handler.data_reply = None
    clock.advance(BACKOFF + 1)
    assert await worker.run_until_idle() == 0
    clock.advance(300)
    assert await worker.run_until_idle() == 1


async def test_a_550_fails_at_once_with_the_server_reply(store: Store, smtp: SmtpHarness) -> None:
    server, worker, clock = setup(smtp, store)
    server.handler.data_reply = "550 5.7.1 Message content rejected"
    (enqueued,) = await store.enqueue([new_email()], now=T0)

    assert await worker.run_until_idle() == 0

    message = await stored(store, enqueued.message_id)
    assert message.status is Status.FAILED
    assert message.attempts == 1
    assert message.next_attempt_at is None
    assert message.last_error is not None
    assert "550" in message.last_error and "Message content rejected" in message.last_error
    assert [(e.kind, e.smtp_code) for e in message.events] == [("failed", 550)]

    clock.advance(3600)  # and it is never picked up again
    assert await worker.run_until_idle() == 0
    assert (await stored(store, enqueued.message_id)).attempts == 1


async def test_a_persistent_451_fails_once_retries_are_exhausted(
    store: Store, smtp: SmtpHarness
) -> None:
    server, worker, clock = setup(smtp, store)
    server.handler.data_reply = "451 4.3.0 Still busy"
    (enqueued,) = await store.enqueue([new_email(max_retries=1)], now=T0)

    await worker.run_until_idle()
    assert (await stored(store, enqueued.message_id)).status is Status.SCHEDULED

    clock.advance(BACKOFF + 1)
    await worker.run_until_idle()

    message = await stored(store, enqueued.message_id)
    assert message.status is Status.FAILED
    assert message.attempts == 2
    assert message.next_attempt_at is None
    assert message.last_error is not None
    assert message.last_error.startswith("retries exhausted after 2 attempts")
    assert "451 4.3.0 Still busy" in message.last_error
    assert [(e.kind, e.attempt) for e in message.events] == [("retry", 1), ("failed", 2)]

    clock.advance(3600)
    assert await worker.run_until_idle() == 0
    assert server.received == []
