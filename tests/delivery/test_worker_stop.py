"""A stopped worker finishes the message in hand, hands back the rest, leaves nothing processing."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from odiseo.domain.models import Status
from odiseo.providers.smtp import SmtpProvider
from odiseo.storage.contract import Store
from odiseo.worker import Worker, WorkerOptions
from tests.support.factories import new_email
from tests.support.smtp import SmtpServer


def make_worker(store: Store, server: SmtpServer, *, shutdown: float) -> Worker:
    provider = SmtpProvider(host="127.0.0.1", port=server.port, use_tls=False, timeout=10)
    options = WorkerOptions(
        batch_size=10,
        lease_seconds=60,
        poll_interval=0.1,
        backoff_seconds=60,
        shutdown_seconds=shutdown,
    )
    return Worker(store=store, provider=provider, options=options)


async def statuses(store: Store, ids: list[str]) -> list[Status]:
    found = [await store.get(i) for i in ids]
    return [m.status for m in found if m is not None]


async def test_stop_finishes_the_message_in_hand_and_releases_the_rest(
    store: Store, smtp_server: SmtpServer
) -> None:
    smtp_server.handler.data_delay = 0.5
    results = await store.enqueue([new_email() for _ in range(6)], now=datetime.now(UTC))
    ids = [r.message_id for r in results]
    worker = make_worker(store, smtp_server, shutdown=5)
    running = asyncio.create_task(worker.run())
    await asyncio.to_thread(smtp_server.wait_for, 1)
    worker.stop()
    await asyncio.wait_for(running, 10)
    final = await statuses(store, ids)
    assert Status.PROCESSING not in final
    sent = final.count(Status.SENT)
    assert 1 <= sent < 6 and final.count(Status.PENDING) == 6 - sent
    assert len(smtp_server.received) == sent
    # What was handed back is claimable at once by the next worker, attempts not spent.
    again = await store.claim_due(limit=10, worker="next", lease_seconds=60, now=datetime.now(UTC))
    assert len(again) == 6 - sent and all(m.attempts == 1 for m in again)


async def test_an_attempt_that_outlives_the_shutdown_budget_is_abandoned(
    store: Store, smtp_server: SmtpServer
) -> None:
    smtp_server.handler.data_delay = 60
    (result,) = await store.enqueue([new_email()], now=datetime.now(UTC))
    worker = make_worker(store, smtp_server, shutdown=0.3)
    running = asyncio.create_task(worker.run())
    for _ in range(600):  # up to 30 s on a loaded machine
        message = await store.get(result.message_id)
        if message is not None and message.status is Status.PROCESSING:
            break
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.3)  # the SMTP transaction is under way now
    worker.stop()
    await asyncio.wait_for(running, 30)  # bounded: 0.3 s budget, not the 60 s SMTP delay
    assert await statuses(store, [result.message_id]) == [Status.PENDING]


async def test_stop_hands_back_the_batch_claimed_ahead(
    store: Store, smtp_server: SmtpServer
) -> None:
    # Full batches make the worker claim the next one while it sends: a stop must
    # hand that one back too, untouched, and leave nothing processing.
    smtp_server.handler.data_delay = 0.2
    results = await store.enqueue([new_email() for _ in range(20)], now=datetime.now(UTC))
    ids = [r.message_id for r in results]
    provider = SmtpProvider(host="127.0.0.1", port=smtp_server.port, use_tls=False, timeout=10)
    options = WorkerOptions(
        batch_size=5, lease_seconds=60, poll_interval=0.1, backoff_seconds=60, shutdown_seconds=5
    )
    worker = Worker(store=store, provider=provider, options=options)
    running = asyncio.create_task(worker.run())
    held = 0
    for _ in range(100):  # wait until the second batch is held too
        held = max(held, (await statuses(store, ids)).count(Status.PROCESSING))
        if held > 5:  # more than a batch: the inbox was topped up while a message was sent
            break
        await asyncio.sleep(0.02)
    assert held > 5, f"the next messages were not claimed ahead ({held} held)"
    worker.stop()
    await asyncio.wait_for(running, 10)
    final = await statuses(store, ids)
    assert Status.PROCESSING not in final
    sent = final.count(Status.SENT)
    assert 1 <= sent < 20 and final.count(Status.PENDING) == 20 - sent
    assert len(smtp_server.received) == sent
    again = await store.claim_due(limit=50, worker="next", lease_seconds=60, now=datetime.now(UTC))
    assert len(again) == 20 - sent and all(m.attempts == 1 for m in again)
