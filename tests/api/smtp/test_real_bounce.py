"""A real bounce from a real MTA: Odiseo sends with its VERP return path to a private
Postfix, which takes the message, fails it for good (5.1.1), writes its own DSN and
sends it to the bounce listener; the test sees email.bounced, the suppression and the
signed webhook (verified with `standardwebhooks`), on both stores."""

from __future__ import annotations

from datetime import UTC, datetime

from odiseo.domain.events import EventType
from odiseo.domain.models import EventFilter, SuppressionReason
from odiseo.providers.smtp import SmtpProvider
from odiseo.storage.contract import Store
from odiseo.worker import Worker, WorkerOptions
from tests.api.smtp.conftest import BOUNCE_DOMAIN, PATHS, BounceListener
from tests.delivery.webhooks.conftest import hook_worker, running, service, until
from tests.support.factories import new_email
from tests.support.postfix import DEAD_DOMAIN, private_postfix
from tests.support.receiver import Receiver

OPTIONS = WorkerOptions(batch_size=10, lease_seconds=60, poll_interval=0.05, backoff_seconds=60)


async def test_postfix_bounces_to_the_listener(
    store: Store, bounce_listener: BounceListener, receiver: Receiver
) -> None:
    _, secret = await service(store).create(
        url=receiver.url, events=["email.bounced"], description=None, now=datetime.now(UTC)
    )
    gone = f"nobody@{DEAD_DOMAIN}"
    item = new_email(to=gone)
    await store.enqueue([item], now=datetime.now(UTC))
    message_id = item.email.message_id

    with private_postfix(bounce_domain=BOUNCE_DOMAIN, bounce_port=bounce_listener.port) as mta:
        provider = SmtpProvider(host="127.0.0.1", port=mta.port, use_tls=False, timeout=10)
        worker = Worker(store=store, provider=provider, options=OPTIONS, return_paths=PATHS)
        try:
            assert await worker.run_until_idle() == 1  # Postfix took it: 250
        finally:
            await provider.close()

        async def bounced() -> list[object]:
            query = EventFilter(message_id=message_id, type=EventType.EMAIL_BOUNCED)
            page, _ = await store.outcomes.events(query, limit=10, before=None)
            return list(page)

        try:
            (event,) = await until(bounced, timeout=60, what="the DSN")
        except AssertionError:
            raise AssertionError(f"no bounce recorded; Postfix's log:\n{mta.log()}") from None
        log = mta.log()

    assert f"from=<{PATHS.address(message_id)}>" in log  # our VERP return path, kept
    assert "sender non-delivery notification" in log  # Postfix wrote the DSN itself
    assert event.event.recipient == gone
    assert event.event.data is not None
    assert event.event.data["source"] == "dsn"
    assert event.event.data["status"] == "5.1.1"
    assert event.event.data["suppressed"] is True
    assert event.event.data["reporting_mta"] == "dns; mta.odiseo.test"
    suppression = await store.outcomes.suppression(gone)
    assert suppression is not None and suppression.reason is SuppressionReason.HARD_BOUNCE
    assert suppression.message_id == message_id

    async with running(hook_worker(store)):
        await until(lambda: receiver.hits, what="the webhook")
    (hit,) = receiver.hits
    body = hit.verify(secret)  # standardwebhooks: signature and timestamp
    assert body["type"] == "email.bounced"
    assert body["data"]["message_id"] == message_id
    assert body["data"]["recipient"] == gone
    assert body["data"]["suppressed"] is True
