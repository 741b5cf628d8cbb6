"""The simulator provider (EMAIL_PROVIDER=simulator, SIMULATOR_DOMAIN): every outcome its
recipients name, through the worker users run, on both stores."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from odiseo.api.wiring import simulated_complaints
from odiseo.domain.models import EventFilter, Status
from odiseo.providers.simulator import Routed, SimulatorProvider
from odiseo.storage.contract import Store
from tests.delivery.test_worker_delivery import BACKOFF, T0, Clock, make_worker, stored
from tests.support.factories import new_email
from tests.support.smtp_harness import SmtpHarness

SIM = "simulator.example.com"


def sim(store: Store) -> SimulatorProvider:
    return SimulatorProvider(slow_seconds=0.05, complain=simulated_complaints(store))


async def outcome(store: Store, local: str, clock: Clock, provider: object) -> str:
    item = new_email(to=(f"{local}+t1@{SIM}",))
    await store.enqueue([item], now=clock.now)
    worker = make_worker(store, provider, clock)  # type: ignore[arg-type]
    await worker.run_until_idle()
    return item.email.message_id


async def types_of(store: Store, message_id: str) -> list[str]:
    message = await stored(store, message_id)
    return [e.type for e in message.events if e.type]


async def test_each_named_outcome_happens(store: Store) -> None:
    clock = Clock(T0)
    provider = sim(store)
    delivered = await outcome(store, "delivered", clock, provider)
    assert (await stored(store, delivered)).status is Status.SENT

    bounced = await outcome(store, "bounce", clock, provider)
    assert (await stored(store, bounced)).status is Status.FAILED
    assert await types_of(store, bounced) == ["email.failed", "email.bounced"]
    assert await store.outcomes.suppression(f"bounce+t1@{SIM}") is None  # never suppressed

    rejected = await outcome(store, "reject", clock, provider)
    message = await stored(store, rejected)
    assert message.status is Status.FAILED and "554 5.7.1" in (message.last_error or "")

    deferred = await outcome(store, "defer", clock, provider)
    assert (await stored(store, deferred)).status is Status.SCHEDULED
    once = await outcome(store, "defer-then-deliver", clock, provider)
    assert (await stored(store, once)).status is Status.SCHEDULED
    clock.advance(BACKOFF + 1)
    await make_worker(store, provider, clock).run_until_idle()  # type: ignore[arg-type]
    assert (await stored(store, once)).status is Status.SENT
    assert (await stored(store, deferred)).status is Status.SCHEDULED  # again: 451

    slow = await outcome(store, "slow", clock, provider)
    assert (await stored(store, slow)).status is Status.SENT
    await provider.close()


async def test_a_complaint_comes_a_moment_later_and_suppresses_nobody(store: Store) -> None:
    provider = sim(store)
    complained = await outcome(store, "complaint", Clock(T0), provider)
    for _ in range(600):  # up to 30 s on a loaded machine
        found, _ = await store.outcomes.events(
            EventFilter(type="email.complained"), limit=5, before=None
        )
        if found:
            break
        await asyncio.sleep(0.05)
    assert [(e.message_id, e.event.recipient) for e in found] == [
        (complained, f"complaint+t1@{SIM}")
    ]
    assert await store.outcomes.suppression(f"complaint+t1@{SIM}") is None
    await provider.close()


async def test_only_the_simulator_domain_is_simulated(smtp: SmtpHarness, store: Store) -> None:
    server = smtp.server()
    provider = Routed(smtp.provider(server.port), sim(store), domain=SIM)
    item = new_email(to=("real@example.com", f"bounce@{SIM}", f"delivered@{SIM}"))
    await store.enqueue([item], now=T0)
    await make_worker(store, provider, Clock(T0)).run_until_idle()  # type: ignore[arg-type]
    assert [r.recipients for r in server.received] == [["real@example.com"]]
    message = await stored(store, item.email.message_id)
    assert message.status is Status.SENT
    assert [(e.type, e.recipient) for e in message.events if e.type] == [
        ("email.sent", None),
        ("email.bounced", f"bounce@{SIM}"),
    ]
    await provider.close()


async def test_throttle_pauses_the_recipients_domain(store: Store) -> None:
    clock = Clock(T0)
    provider = sim(store)
    throttled = await outcome(store, "throttle", clock, provider)
    message = await stored(store, throttled)
    assert message.status is Status.SCHEDULED and message.next_attempt_at == T0 + timedelta(
        seconds=30
    )
    found, _ = await store.outcomes.events(
        EventFilter(type="domain.throttled"), limit=5, before=None
    )
    assert [e.event.data["domain"] for e in found] == [SIM]
    # The simulator's domain is paused: its next message waits, untried, as for a real one.
    waiting = await outcome(store, "delivered", clock, provider)
    assert (await stored(store, waiting)).attempts == 0
    # After the pause the domain takes 1 a second: the throttled message goes first (it is
    # older), meets the reply again while recovering: a repeat, paused twice as long.
    clock.advance(30)
    await make_worker(store, provider, clock).run_until_idle()  # type: ignore[arg-type]
    again = await stored(store, throttled)
    assert again.attempts == 2 and again.next_attempt_at == clock.now + timedelta(seconds=60)
    found, _ = await store.outcomes.events(
        EventFilter(type="domain.throttled"), limit=5, before=None
    )
    assert [e.event.data["onsets"] for e in found] == [2, 1]
    assert (await stored(store, waiting)).attempts == 0
    await provider.close()
