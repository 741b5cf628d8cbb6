"""SMTP_MAX_PER_* tokens through the worker users run, on both stores: what a batch took
and did not send goes back to its window, even when the claim failed."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime
from typing import Any

import pytest

from odiseo.domain.limits import relay_limits
from odiseo.errors import StoreUnavailable
from odiseo.storage.contract import Store
from tests.delivery.test_worker_delivery import T0, Clock, make_worker
from tests.delivery.test_worker_pipeline import enqueue, until
from tests.delivery.test_worker_pipeline import make_worker as pipeline_worker
from tests.support.factories import new_email
from tests.support.scripted import FakeProvider, StoreWrapper
from tests.support.smtp_harness import SmtpHarness


async def test_a_failed_claim_gives_its_tokens_back(smtp: SmtpHarness, store: Store) -> None:
    """A claim that took a batch's tokens and then met the database away (SQLite busy,
    a PostgreSQL restart) kept them: 2 messages sent counted 52 against the day."""
    server = smtp.server()
    wrapped = StoreWrapper(store)
    failures = [StoreUnavailable("the database went away")]

    async def fail_once() -> None:
        if failures:
            raise failures.pop()

    wrapped.claim_hook = fail_once
    worker = make_worker(wrapped, smtp.provider(server.port), Clock(T0))  # type: ignore[arg-type]
    limits = relay_limits(per_second=None, per_minute=None, per_day=1000)
    worker.options = dataclasses.replace(worker.options, limits=limits, store_retry_seconds=0.01)
    await store.enqueue([new_email(), new_email()], now=T0)

    assert await worker.run_until_idle() == 2
    assert failures == []  # the claim did fail once
    assert await store.limits.usage(limits, now=T0) == {"relay:86400": 2}


async def test_a_stop_gives_back_the_tokens_of_what_it_hands_back(store: Store) -> None:
    """A stop hands back the messages claimed but never begun; their tokens went with
    them, so each restart used to cost the day's quota a batch."""
    limits = relay_limits(per_second=None, per_minute=None, per_day=1000)
    provider = FakeProvider(delays={"first@x.test": 1.0})
    worker = pipeline_worker(store, provider)
    worker.options = dataclasses.replace(worker.options, limits=limits)
    await enqueue(store, ["first@x.test", *(f"r{i}@x.test" for i in range(8))])
    running = asyncio.ensure_future(worker.run())
    await until(lambda: "first@x.test" in provider.sending)
    worker.stop()
    await asyncio.wait_for(running, 10)

    begun = len(provider.sent)
    assert 1 <= begun < 9  # the stop came with most of the batch not begun
    assert await store.limits.usage(limits, now=datetime.now(UTC)) == {"relay:86400": begun}


async def test_claimed_mail_goes_out_when_giving_back_unused_tokens_fails(
    smtp: SmtpHarness, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The give-back after a claim met the database away: the claim was dropped, and
    its messages stayed `processing`, leased to a worker that renewed them and never
    sent them, for as long as it lived."""
    server = smtp.server()
    worker = make_worker(store, smtp.provider(server.port), Clock(T0))
    limits = relay_limits(per_second=None, per_minute=None, per_day=1000)
    worker.options = dataclasses.replace(worker.options, limits=limits, store_retry_seconds=0.01)
    failures = [StoreUnavailable("the database went away")]
    give_back = store.limits.give_back

    async def fail_once(*args: Any, **kwargs: Any) -> None:
        if failures:
            raise failures.pop()
        await give_back(*args, **kwargs)

    monkeypatch.setattr(store.limits, "give_back", fail_once)
    await store.enqueue([new_email(), new_email()], now=T0)

    assert await worker.run_until_idle() == 2
    assert failures == []  # the give-back did fail once
    assert await store.limits.usage(limits, now=T0) == {"relay:86400": 2}
