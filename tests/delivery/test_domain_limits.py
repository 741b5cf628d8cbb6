"""DOMAIN_LIMITS on both stores, through the worker users run: a flooded domain gets its
window's count and waits; mail to other domains goes out at once (no head-of-line
blocking), and a message counts against each of its limited domains."""

from __future__ import annotations

import dataclasses

from odiseo.domain.limits import domain_limits
from odiseo.domain.models import Status
from odiseo.storage.contract import Store
from tests.delivery.test_worker_delivery import T0, Clock, make_worker, stored
from tests.support.factories import new_email
from tests.support.smtp_harness import SmtpHarness


async def test_a_flooded_domain_never_holds_up_the_others(smtp: SmtpHarness, store: Store) -> None:
    server = smtp.server()
    clock = Clock(T0)
    worker = make_worker(store, smtp.provider(server.port), clock)
    worker.options = dataclasses.replace(
        worker.options, domain_limits=domain_limits("Gmail.com=5/min, outlook.com=2/min")
    )
    flood = [new_email(to=(f"user{i}@gmail.com",)) for i in range(30)]
    both = new_email(to=("a@outlook.com", "b@gmail.com"))
    others = [new_email(to=(f"user{i}@example.org",)) for i in range(3)]
    await store.enqueue(flood, now=T0)
    await store.enqueue([both, *others], now=clock.now)
    await worker.run_until_idle()

    sent = [r.recipients for r in server.received]
    assert sum(1 for r in sent if any(a.endswith("@gmail.com") for a in r)) == 5
    assert [r for r in sent if r[0].endswith("@example.org")] == [
        [f"user{i}@example.org"] for i in range(3)
    ]
    states = [await stored(store, m.email.message_id) for m in flood]
    waiting = [m for m in states if m.status is Status.PENDING]
    assert len(waiting) == 25  # queued, not attempted, not failed
    assert all(m.attempts == 0 for m in waiting)
    # Also to gmail.com: it waits for gmail's next window, like the flood before it.
    held = await stored(store, both.email.message_id)
    assert (held.status, held.attempts) == (Status.PENDING, 0)

    clock.advance(60)  # the next minute: five more
    await worker.run_until_idle()
    gmail = [r for r in server.received if any(a.endswith("@gmail.com") for a in r.recipients)]
    assert len(gmail) == 10


def test_domain_limits_are_parsed_or_refused_naming_the_entry() -> None:
    parsed = domain_limits("gmail.com=600/min, outlook.com=10/s,bücher.example=5/day")
    assert [(limit.domain, limit.count, limit.seconds) for limit in parsed] == [
        ("gmail.com", 600, 60), ("outlook.com", 10, 1), ("xn--bcher-kva.example", 5, 86400)
    ]  # fmt: skip
    for wrong in ("gmail.com", "gmail.com=x/min", "gmail.com=5/fortnight", "a@b.com=5/min"):
        try:
            domain_limits(wrong)
        except ValueError as exc:
            assert wrong.split(",")[0] in str(exc)
        else:
            raise AssertionError(wrong)
