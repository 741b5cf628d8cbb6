"""With BOUNCE_DOMAIN, a message leaves with its VERP return path as the envelope sender
(its header From unchanged), and the relay's id for it, from the reply to DATA, is
recorded so the relay's reports find it: both stores, a real aiosmtpd server."""

from __future__ import annotations

from datetime import UTC, datetime

from odiseo.domain.bounces import Notice, NoticeKind, Returned
from odiseo.domain.models import Status
from odiseo.domain.verp import ReturnPaths
from odiseo.storage.contract import Store
from odiseo.worker import Worker, WorkerOptions
from tests.support.factories import new_email
from tests.support.smtp_harness import SmtpHarness

PATHS = ReturnPaths(domain="bounce.odiseo.test", secret=b"a bounce secret of 32 characters")
OPTIONS = WorkerOptions(batch_size=10, lease_seconds=60, poll_interval=0.05, backoff_seconds=60)


async def test_the_envelope_sender_is_the_verp_address(store: Store, smtp: SmtpHarness) -> None:
    server = smtp.server()
    server.handler.accepted_reply = "250 2.0.0 Ok: queued as 4Y2bQk3z1Xz"
    item = new_email(to="ana@example.com")
    await store.enqueue([item], now=datetime.now(UTC))
    worker = Worker(
        store=store, provider=smtp.provider(server.port), options=OPTIONS, return_paths=PATHS
    )
    assert await worker.run_until_idle() == 1

    (received,) = server.wait_for(1)
    message_id = item.email.message_id
    assert received.sender == PATHS.address(message_id)
    assert PATHS.message_id(received.sender) == message_id
    assert received.message["From"] == "Odiseo <noreply@odiseo.test>"
    stored = await store.get(message_id)
    assert stored is not None and stored.status is Status.SENT

    gone = Notice(kind=NoticeKind.BOUNCED, recipient="ana@example.com", source="ses")
    by_relay = Returned(notices=(gone,), relay_message_id="4Y2bQk3z1Xz")
    assert await store.outcomes.record_returned(by_relay, now=datetime.now(UTC)) == message_id


async def test_without_a_bounce_domain_the_sender_is_the_from_address(
    store: Store, smtp: SmtpHarness
) -> None:
    server = smtp.server()
    await store.enqueue([new_email()], now=datetime.now(UTC))
    worker = Worker(store=store, provider=smtp.provider(server.port), options=OPTIONS)
    assert await worker.run_until_idle() == 1
    (received,) = server.wait_for(1)
    assert received.sender == "noreply@odiseo.test"
