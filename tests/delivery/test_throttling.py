"""Adaptive throttling through the worker users run, against a real SMTP server, on both
stores: a throttle reply at RCPT slows that domain only (the others go at once), one at
MAIL slows the whole relay; each onset publishes one event; the scope recovers gradually."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable
from datetime import datetime, timedelta

from odiseo.api.wiring import build_worker
from odiseo.config import Settings
from odiseo.domain.events import EventType
from odiseo.domain.models import EventFilter, PublishedEvent, Status
from odiseo.domain.throttle import Policy
from odiseo.metrics import Metrics
from odiseo.storage.contract import Store
from odiseo.worker import utcnow
from tests.delivery.test_worker_delivery import T0, Clock, make_worker, stored
from tests.support.factories import new_email
from tests.support.smtp_harness import SmtpHarness

GMAIL = "4.7.28 [203.0.113.5] Our system has detected an unusual rate of unsolicited mail - gsmtp"


async def events(store: Store, type_: EventType) -> list[PublishedEvent]:
    found, _ = await store.outcomes.events(EventFilter(type=type_.value), limit=50, before=None)
    return found


def sample(metrics: Metrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


async def test_a_throttled_domain_slows_alone_and_recovers_gradually(
    smtp: SmtpHarness, store: Store
) -> None:
    server = smtp.server()
    server.handler.rcpt_domain_replies = {"gmail.com": f"450 {GMAIL}"}
    clock = Clock(T0)
    worker = make_worker(store, smtp.provider(server.port), clock)
    gmail = [new_email(to=(f"user{i}@gmail.com",)) for i in range(6)]
    others = [new_email(to=(f"user{i}@example.org",)) for i in range(4)]
    await store.enqueue(gmail[:3], now=T0)  # gmail first: others behind it, not held up
    await store.enqueue(others, now=T0)
    await store.enqueue(gmail[3:], now=T0)
    await worker.run_until_idle()

    # One gmail message met the throttle reply; the other gmail mail was not tried.
    assert server.handler.refused == [("RCPT", "user0@gmail.com")]
    assert sorted(r.recipients[0] for r in server.received) == [
        f"user{i}@example.org" for i in range(4)
    ]
    first = await stored(store, gmail[0].email.message_id)
    assert first.status is Status.SCHEDULED and first.attempts == 1
    assert first.next_attempt_at == T0 + timedelta(seconds=30)  # the pause's end
    for item in gmail[1:]:
        waiting = await stored(store, item.email.message_id)
        assert (waiting.status, waiting.attempts) == (Status.PENDING, 0)
    (event,) = await events(store, EventType.DOMAIN_THROTTLED)
    assert event.event.data == {
        "scope": "domain",
        "domain": "gmail.com",
        "reply": f"450 {GMAIL}",
        "until": (T0 + timedelta(seconds=30)).isoformat(),
        "recovered_at": (T0 + timedelta(seconds=60)).isoformat(),
        "onsets": 1,
    }
    assert await events(store, EventType.RELAY_THROTTLED) == []
    assert sample(worker.metrics, "odiseo_throttle_signals_total", scope="domain") == 1
    assert sample(worker.metrics, "odiseo_emails_retried_total", reason="throttled") == 1
    assert [(t.scope.value, t.domain) for t in await store.limits.throttles(now=T0)] == [
        ("domain", "gmail.com")
    ]

    # Still paused 20 s on: nothing to gmail, the pause holds for every worker.
    clock.advance(20)
    await worker.run_until_idle()
    assert len(server.handler.refused) == 1 and len(server.received) == 4

    # The pause is over, gmail takes mail again: 1 a second at first, then more.
    server.handler.rcpt_domain_replies = {}
    clock.now = T0 + timedelta(seconds=30)
    await worker.run_until_idle()
    assert len(server.received) == 5
    clock.advance(1)
    await worker.run_until_idle()
    assert len(server.received) == 6
    clock.now = T0 + timedelta(seconds=45)  # 6 a second by now
    await worker.run_until_idle()
    assert len(server.received) == 10
    for item in gmail:
        assert (await stored(store, item.email.message_id)).status is Status.SENT
    assert len(await events(store, EventType.DOMAIN_THROTTLED)) == 1  # one onset, one event
    assert await store.limits.throttles(now=T0 + timedelta(seconds=60)) == []


class RunningClock(Clock):
    """A clock that runs with real time from T0, and can be moved on."""

    def __init__(self, now: datetime) -> None:
        super().__init__(now)
        self.started = time.monotonic()

    def __call__(self) -> datetime:
        return self.now + timedelta(seconds=time.monotonic() - self.started)

    def at(self, moment: datetime) -> None:
        """Jump so that it is `moment` now (and time runs on from there)."""
        self.now, self.started = moment, time.monotonic()


async def test_a_throttle_at_mail_pauses_the_relay_then_it_recovers(
    smtp: SmtpHarness, store: Store
) -> None:
    server = smtp.server()
    server.handler.mail_reply = "421 4.7.0 Try again later, closing connection."
    clock = RunningClock(T0)
    worker = make_worker(store, smtp.provider(server.port), clock)
    items = [new_email(to=(f"user@d{i}.example",)) for i in range(5)]
    await store.enqueue(items, now=T0)
    await worker.run_until_idle()

    assert len(server.handler.refused) == 1 and server.received == []  # one try, then a pause
    (event,) = await events(store, EventType.RELAY_THROTTLED)
    assert event.event.data["scope"] == "relay" and "domain" not in event.event.data
    assert event.event.data["reply"] == "421 4.7.0 Try again later, closing connection."
    states = [await stored(store, item.email.message_id) for item in items]
    assert [s.attempts for s in states].count(0) == 4  # the others were not tried
    assert sample(worker.metrics, "odiseo_throttle_signals_total", scope="relay") == 1

    clock.advance(10)  # still paused: no claim at all
    await worker.run_until_idle()
    assert len(server.handler.refused) == 1 and server.received == []

    server.handler.mail_reply = None
    clock.at(datetime.fromisoformat(event.event.data["until"]))  # the pause is just over
    started = time.monotonic()
    await worker.run_until_idle()
    arrivals = [r.at for r in server.wait_for(5)]
    assert all(s.status is Status.SENT for s in [await stored(store, i.email.message_id)
                                                   for i in items])  # fmt: skip
    # 1 a second for the first 3 s, then 2: five messages span at least four one-second
    # windows (two of them may be a moment apart, across a window's edge).
    assert arrivals[-1] - arrivals[0] >= 2.0
    assert time.monotonic() - started < 30
    assert len(await events(store, EventType.RELAY_THROTTLED)) == 1


async def test_throttling_off_leaves_a_throttle_reply_an_ordinary_retry(
    smtp: SmtpHarness, store: Store
) -> None:
    server = smtp.server()
    server.handler.rcpt_domain_replies = {"gmail.com": f"450 {GMAIL}"}
    clock = Clock(T0)
    worker = make_worker(store, smtp.provider(server.port), clock)
    worker.options = dataclasses.replace(worker.options, throttle=None)
    items = [new_email(to=(f"user{i}@gmail.com",)) for i in range(3)]
    await store.enqueue(items, now=T0)
    await worker.run_until_idle()
    assert len(server.handler.refused) == 3  # each tried, each rescheduled on its own
    assert await events(store, EventType.DOMAIN_THROTTLED) == []


def test_the_policy_defaults_are_the_documented_ones() -> None:
    assert Policy() == Policy(pause_seconds=30.0, max_pause_seconds=900.0)


async def test_another_worker_honours_the_pause_and_a_partial_refusal_throttles_too(
    smtp: SmtpHarness, store: Store, more_stores: Callable[[], Store]
) -> None:
    server = smtp.server()
    server.handler.rcpt_domain_replies = {"gmail.com": f"451 {GMAIL}"}
    clock = Clock(T0)
    first = make_worker(store, smtp.provider(server.port), clock)
    other_store = more_stores()
    second = make_worker(other_store, smtp.provider(server.port), clock)
    second.name = "another-worker"
    # Sent to example.org; refused at RCPT for gmail.com with a throttle reply.
    both = new_email(to=("a@example.org", "b@gmail.com"))
    await store.enqueue([both], now=T0)
    await first.run_until_idle()
    assert [r.recipients for r in server.received] == [["a@example.org"]]
    assert (await stored(store, both.email.message_id)).status is Status.SENT
    (event,) = await events(store, EventType.DOMAIN_THROTTLED)
    assert event.event.data["domain"] == "gmail.com"

    # The other worker, which never met the reply, holds gmail.com back as well.
    later = [new_email(to=("c@gmail.com",)), new_email(to=("d@example.org",))]
    await store.enqueue(later, now=T0)
    clock.advance(5)
    await second.run_until_idle()
    assert server.handler.refused == [("RCPT", "b@gmail.com")]
    assert [r.recipients for r in server.received][1:] == [["d@example.org"]]
    waiting = await stored(store, later[0].email.message_id)
    assert (waiting.status, waiting.attempts) == (Status.PENDING, 0)


async def test_a_running_worker_waits_out_a_relay_pause_from_data(
    smtp: SmtpHarness, store: Store
) -> None:
    server = smtp.server()
    server.handler.data_reply = (
        "451 4.7.500 Server busy. Please try again later from [203.0.113.5]."
    )
    worker = make_worker(store, smtp.provider(server.port), Clock(T0))
    worker.clock = utcnow
    worker.options = dataclasses.replace(
        worker.options, throttle=Policy(pause_seconds=1, max_pause_seconds=900)
    )
    items = [new_email(to=(f"user@d{i}.example",)) for i in range(3)]
    await store.enqueue(items, now=utcnow())
    running = asyncio.create_task(worker.run())
    try:
        deadline = time.monotonic() + 15
        while not server.handler.refused and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.01)  # the server's thread appends: no event to await
        refused_at = time.monotonic()
        server.handler.data_reply = None
        arrivals = [r.at for r in await asyncio.to_thread(server.wait_for, 3)]
    finally:
        worker.stop()
        await running
    assert len(server.handler.refused) == 1  # one try, then the whole relay paused
    assert min(arrivals) - refused_at >= 0.8  # the 1 s pause, whichever message went first
    (event,) = await events(store, EventType.RELAY_THROTTLED)
    assert event.event.data["reply"].startswith("451 4.7.500 Server busy")


async def test_a_throttle_reply_never_fails_a_message_with_its_retries_spent(
    smtp: SmtpHarness, store: Store
) -> None:
    server = smtp.server()
    server.handler.rcpt_domain_replies = {"gmail.com": f"450 {GMAIL}"}
    clock = Clock(T0)
    worker = make_worker(store, smtp.provider(server.port), clock)
    item = new_email(to=("a@gmail.com",), max_retries=0)  # a plain 4xx would fail it
    await store.enqueue([item], now=T0)
    await worker.run_until_idle()
    message = await stored(store, item.email.message_id)
    assert (message.status, message.attempts) == (Status.SCHEDULED, 1)
    assert message.next_attempt_at == T0 + timedelta(seconds=30)
    assert (message.last_error or "").startswith("throttled: ")


async def test_the_settings_reach_the_worker(smtp: SmtpHarness, store: Store) -> None:
    server = smtp.server()
    server.handler.mail_reply = "454 Throttling failure: Maximum sending rate exceeded."
    common = {
        "email_provider": "smtp",
        "smtp_host": "127.0.0.1",
        "smtp_port": server.port,
        "smtp_use_tls": False,
        "smtp_pool_size": 1,  # one at a time: with more, both may already be on their way
        "log_to_file": False,
    }
    off = build_worker(Settings(**common, throttle_pause_seconds=0), store)
    assert off.options.throttle is None
    await off.provider.close()
    settings = Settings(**common, throttle_pause_seconds=5, throttle_max_pause_seconds=60)
    worker = build_worker(settings, store)
    assert worker.options.throttle == Policy(pause_seconds=5, max_pause_seconds=60)
    await store.enqueue([new_email(), new_email()], now=utcnow())
    await worker.run_until_idle()
    await worker.provider.close()
    (event,) = await events(store, EventType.RELAY_THROTTLED)
    assert event.event.data["reply"] == "454 Throttling failure: Maximum sending rate exceeded."
    assert len(server.handler.refused) == 1  # SES's throttle: the second message waits


async def test_replies_to_messages_already_on_their_way_make_one_event(
    smtp: SmtpHarness, store: Store
) -> None:
    server = smtp.server()
    server.handler.mail_reply = "421 4.7.0 Try again later, closing connection."
    clock = Clock(T0)
    worker = make_worker(store, smtp.provider(server.port, pool_size=4), clock)
    worker.options = dataclasses.replace(worker.options, concurrency=4)
    items = [new_email(to=(f"user@d{i}.example",)) for i in range(12)]
    await store.enqueue(items, now=T0)
    await worker.run_until_idle()
    # Up to one message per connection was on its way when the first reply came.
    assert 1 <= len(server.handler.refused) <= 4
    assert len(await events(store, EventType.RELAY_THROTTLED)) == 1
    states = [await stored(store, item.email.message_id) for item in items]
    assert {s.status for s in states} <= {Status.SCHEDULED, Status.PENDING}
    tried = [s for s in states if s.attempts]
    assert len(tried) == len(server.handler.refused)
    assert {s.next_attempt_at for s in tried} == {T0 + timedelta(seconds=30)}
    assert sample(worker.metrics, "odiseo_throttle_signals_total", scope="relay") == len(tried)
