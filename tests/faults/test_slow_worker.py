"""A slow but healthy worker keeps its lease alive: nobody overtakes it, nothing is sent twice."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime

from odiseo.domain.models import Status
from odiseo.providers.smtp import SmtpProvider
from odiseo.storage.contract import Store
from odiseo.worker import Worker, WorkerOptions
from tests.support.factories import new_email
from tests.support.smtp import SmtpServer

MESSAGES = 8
LEASE = 1.0  # far shorter than the batch takes: only lease extensions keep it


def worker(store: Store, server: SmtpServer, name: str) -> Worker:
    return Worker(
        store=store,
        provider=SmtpProvider(host="127.0.0.1", port=server.port, use_tls=False, timeout=10),
        options=WorkerOptions(
            batch_size=MESSAGES, lease_seconds=LEASE, poll_interval=0.1, backoff_seconds=60
        ),
        name=name,
    )


async def test_slow_worker_is_not_overtaken(store: Store, smtp_server: SmtpServer) -> None:
    smtp_server.handler.data_delay = 0.4  # 8 x 0.4 s = 3.2 s per batch, lease 1 s
    results = await store.enqueue([new_email() for _ in range(MESSAGES)], now=datetime.now(UTC))
    slow, eager = worker(store, smtp_server, "slow"), worker(store, smtp_server, "eager")
    tasks = [asyncio.create_task(slow.run())]
    await asyncio.sleep(0.2)  # let the slow worker claim the whole batch first
    tasks.append(asyncio.create_task(eager.run()))
    await asyncio.to_thread(smtp_server.wait_for, MESSAGES, 30)
    await asyncio.sleep(2 * LEASE)  # room for a wrongful takeover to show itself
    for w in (slow, eager):
        w.stop()
    await asyncio.gather(*tasks)
    counts = Counter(str(r.message["Message-ID"]) for r in smtp_server.received)
    assert sum(counts.values()) == MESSAGES == len(counts)
    assert (slow.delivered, eager.delivered) == (MESSAGES, 0)
    for result in results:
        message = await store.get(result.message_id)
        assert message is not None and message.status is Status.SENT
        assert [e.kind for e in message.events] == ["sent"]
