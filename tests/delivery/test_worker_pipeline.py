"""The pipelined worker: lanes, claim-ahead, background result writes, the heartbeat."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import pytest

from odiseo.domain.models import Status
from odiseo.errors import StoreUnavailable
from odiseo.storage.contract import Store
from odiseo.worker import Worker, WorkerOptions
from tests.support.factories import new_email
from tests.support.scripted import FakeProvider, StoreWrapper, deadlock


def make_worker(
    store: Any,
    provider: FakeProvider,
    *,
    concurrency: int = 1,
    lease: float = 60.0,
    backoff: float = 60.0,
    name: str = "w1",
) -> Worker:
    options = WorkerOptions(
        batch_size=10,
        lease_seconds=lease,
        poll_interval=0.05,
        backoff_seconds=backoff,
        shutdown_seconds=5,
        concurrency=concurrency,
    )
    return Worker(store=store, provider=provider, options=options, name=name)


async def enqueue(store: Store, recipients: Sequence[str]) -> dict[str, str]:
    """Enqueue one message per recipient, in order; recipient -> message_id."""
    items = [new_email(to=r) for r in recipients]
    await store.enqueue(items, now=datetime.now(UTC))
    return {r: i.email.message_id for r, i in zip(recipients, items, strict=True)}


async def status_of(store: Store, message_id: str) -> Status:
    message = await store.get(message_id)
    assert message is not None
    return message.status


async def until(condition: Any, timeout: float = 30.0) -> None:
    """A liveness bound, generous for a loaded machine: a passing test never waits it out."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.01)


async def test_background_writes_never_overlap_and_all_land_before_run_returns(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two lanes flushing while a write is slow: lane B takes the write in flight
    (_drain_records sets _recording = None, then awaits it), lane A then finds no write in
    flight and starts one, and when B's wait ends B overwrites _recording with its own
    write. The write A started is no longer referenced: nobody awaits it, run() returns
    (the process then exits, the provider is closed) while it is still pending.

    (The pipelined worker this was found in flushed every FLUSH_SECONDS; the recorder
    now writes each group as soon as the previous write is done, one at a time.)
    """
    wrapped = StoreWrapper(store)
    ids = await enqueue(store, ["m1@x.test", "m2@x.test", "m3@x.test", "m4@x.test"])
    m2 = (await store.get(ids["m2@x.test"])).id  # type: ignore[union-attr]

    async def slow_write(results: Sequence[Any]) -> None:
        await asyncio.sleep(1.0 if any(r.email_id == m2 for r in results) else 0.3)

    wrapped.record_hook = slow_write
    provider = FakeProvider()
    worker = make_worker(wrapped, provider, concurrency=2)
    running = asyncio.ensure_future(worker.run())
    await until(lambda: len(provider.sent) == 4)
    worker.stop()
    await asyncio.wait_for(running, 10)

    statuses = {r: await status_of(store, i) for r, i in ids.items()}
    await asyncio.sleep(1.2)  # let the stray write end before the store closes
    assert Status.PROCESSING not in statuses.values(), f"run() returned with {statuses}"
    assert wrapped.max_records_in_flight == 1, "more than one result write was in flight"


async def test_a_failed_result_write_is_retried_not_kept_processing_forever(
    store: Store,
) -> None:
    """_record retries only StoreUnavailable. Any other database error (the RECORD/EXTEND
    deadlock of store/test_postgres_lock_order.py, a NUL in a reply on PostgreSQL...) ends the
    background task with the error stored and _held never cleared, so the heartbeat
    keeps extending the lease of a message that was sent but never recorded, for as
    long as the worker lives: it is neither recorded nor handed to another worker."""
    wrapped = StoreWrapper(store)
    failures = [deadlock()]

    async def fail_once(results: Sequence[Any]) -> None:
        if failures:
            raise failures.pop()

    wrapped.record_hook = fail_once
    (message_id,) = (await enqueue(store, ["only@x.test"])).values()
    provider = FakeProvider()
    worker = make_worker(wrapped, provider, lease=1.0)  # heartbeat every 0.5 s
    running = asyncio.ensure_future(worker.run())
    try:
        await until(lambda: provider.sent == ["only@x.test"])
        await asyncio.sleep(3.0)  # three lease lengths

        message = await store.get(message_id)
        assert message is not None
        assert message.status is Status.SENT, (
            f"{message.status} {message.attempts} attempt(s), locked until "
            f"{message.locked_until} by {message.locked_by}, now {datetime.now(UTC)}"
        )
    finally:
        worker.stop()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(running, 10)


async def test_stop_after_a_failed_result_write_ends_the_heartbeat(store: Store) -> None:
    """Same failed write, then stop(): run()'s finally re-raises it from _drain_records,
    so the heartbeat is never cancelled (it keeps extending the lost message's lease in an
    `odiseo run` process, whose API stays up) and the provider is never closed."""
    wrapped = StoreWrapper(store)
    failures = [deadlock()]

    async def fail_once(results: Sequence[Any]) -> None:
        if failures:
            raise failures.pop()

    wrapped.record_hook = fail_once
    await enqueue(store, ["only@x.test"])
    provider = FakeProvider()
    worker = make_worker(wrapped, provider, lease=1.0)
    before = set(asyncio.all_tasks())
    running = asyncio.ensure_future(worker.run())
    await until(lambda: provider.sent == ["only@x.test"])
    await asyncio.sleep(0.2)
    worker.stop()
    with contextlib.suppress(Exception):
        await asyncio.wait_for(running, 10)

    leftover = [
        t
        for t in asyncio.all_tasks() - before - {asyncio.current_task()}
        if "heartbeat" in repr(t.get_coro())
    ]
    for task in leftover:
        task.cancel()
    assert leftover == [], "the heartbeat outlived run()"


async def test_a_failed_lease_extension_does_not_end_the_heartbeat(store: Store) -> None:
    """The heartbeat caught only StoreUnavailable: one DeadlockDetectedError from
    renewing the leases (see store/test_postgres_lock_order.py) and the heartbeat task
    is gone for the worker's life, so a slow delivery loses its lease and another worker
    sends it again."""
    wrapped = StoreWrapper(store)
    failures = [deadlock()]

    async def fail_once() -> None:
        if failures:
            raise failures.pop()

    wrapped.heartbeat_hook = fail_once
    await enqueue(store, ["slow@x.test"])
    # Heartbeat every 1 s: the first renewal fails, the second (at 2 s) must come, a
    # second before the lease would end; the send outlasts the lease.
    provider = FakeProvider(delays={"slow@x.test": 5.0})
    worker = make_worker(wrapped, provider, lease=3.0)
    running = asyncio.ensure_future(worker.run())
    stolen: list[Any] = []
    try:
        await until(lambda: "slow@x.test" in provider.sending)
        while "slow@x.test" in provider.sending:  # a second worker, polling
            stolen += await store.claim_due(
                limit=10, worker="thief", lease_seconds=60, now=datetime.now(UTC)
            )
            await asyncio.sleep(0.1)
    finally:
        worker.stop()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(running, 10)
    assert stolen == [], "a message was taken over while its worker was still sending it"


async def test_a_lane_failure_never_hands_back_a_message_another_lane_is_sending(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When a lane raises (here: the background write it drains failed), gather() raises
    at once while the other lanes keep running, and process()'s finally releases every
    `untried` message, including the one another lane is in the middle of sending. It
    is pending again (attempt refunded) and another worker sends it a second time."""
    wrapped = StoreWrapper(store)
    failures = [deadlock()]

    async def fail_once(results: Sequence[Any]) -> None:
        if failures:
            raise failures.pop()

    wrapped.record_hook = fail_once
    await enqueue(store, ["a@x.test", "slow@x.test", "c@x.test"])
    provider = FakeProvider(delays={"slow@x.test": 1.5})
    worker = make_worker(wrapped, provider, concurrency=2)
    running = asyncio.ensure_future(worker.run())
    stolen: list[Any] = []
    try:
        await until(lambda: "slow@x.test" in provider.sending)
        while "slow@x.test" in provider.sending:
            stolen += await store.claim_due(
                limit=10, worker="thief", lease_seconds=60, now=datetime.now(UTC)
            )
            await asyncio.sleep(0.05)
    finally:
        worker.stop()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(running, 10)
        await asyncio.sleep(0.2)
    taken = [m.email.to for m in stolen]
    assert taken == [], f"taken over while still being sent by the first worker: {taken}"


async def test_run_until_idle_leaves_nothing_due(store: Store) -> None:
    """'Deliver until nothing is due': the last results are written in the background
    and the next claim runs before that write, so a retry that is already due (backoff
    0 here, or any retry whose time came during the batch) is not seen."""
    (message_id,) = (await enqueue(store, ["flaky@x.test"])).values()
    provider = FakeProvider(fail_first={"flaky@x.test"})
    worker = make_worker(store, provider, backoff=0.0)

    delivered = await worker.run_until_idle()

    assert (delivered, await status_of(store, message_id)) == (1, Status.SENT)


async def test_a_claim_whose_answer_was_lost_is_sent_without_waiting_for_its_lease(
    store: Store,
) -> None:
    """A claim can commit and its answer never arrive (PostgreSQL crashed or the
    connection dropped just after the commit). Its messages were leased to a worker that
    never saw them, and its heartbeat, renewing every lease in its name, kept them
    `processing` for as long as it lived (tests/faults/test_database_outage.py timed
    out). The next claim hands them back first."""
    wrapped = StoreWrapper(store)
    lost = [StoreUnavailable("connection lost after the claim committed")]

    async def lose_the_answer_once(claimed: list[Any]) -> None:
        if lost and claimed:
            raise lost.pop()

    wrapped.claimed_hook = lose_the_answer_once
    ids = await enqueue(store, ["a@x.test", "b@x.test", "c@x.test"])
    provider = FakeProvider()
    worker = make_worker(wrapped, provider, lease=60.0)
    worker.options = dataclasses.replace(worker.options, store_retry_seconds=0.05)
    running = asyncio.ensure_future(worker.run())
    try:  # the bound is half the lease: waiting it out would fail
        await until(lambda: len(provider.sent) == 3, timeout=30)
    finally:
        worker.stop()
        await asyncio.wait_for(running, 10)
    assert lost == []  # the answer was lost once
    assert sorted(provider.sent) == ["a@x.test", "b@x.test", "c@x.test"]
    for message_id in ids.values():
        stored = await store.get(message_id)
        assert stored is not None and stored.status is Status.SENT
        assert stored.attempts == 1  # handed back as if never claimed
