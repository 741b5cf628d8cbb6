"""What the SMTP client hands on to the rest of the worker: reply text the store must hold."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from odiseo.domain.models import Status
from odiseo.providers.smtp import SmtpProvider
from odiseo.storage.contract import Store
from odiseo.worker import Worker, WorkerOptions
from tests.delivery.test_smtp_client import Fake
from tests.support.factories import new_email


async def test_a_reply_with_a_nul_byte_is_recorded_on_both_stores(store: Store) -> None:
    """Wire._line decodes reply text with errors="replace", which keeps NUL (and other
    C0 controls). The reply text becomes the attempt's response/last_error; PostgreSQL
    text cannot hold NUL, so RECORD fails with CharacterNotInRepertoireError (not
    StoreUnavailable): the message was delivered, its result is never written, and
    the worker gives up on it (see test_worker_pipeline.py) - on SQLite the same reply is fine.
    The next worker to take the message over sends it again, gets the same reply..."""
    script = Fake(replies={"BODY": "250 2.0.0 queued as \x00A1B2"})
    server = await asyncio.start_server(script.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    item = new_email()
    await store.enqueue([item], now=datetime.now(UTC))
    worker = Worker(
        store=store,
        provider=SmtpProvider(host="127.0.0.1", port=port, use_tls=False, timeout=5),
        options=WorkerOptions(
            batch_size=10, lease_seconds=60, poll_interval=0.1, backoff_seconds=60
        ),
    )
    raised = None
    try:
        try:
            await worker.run_until_idle()
        except Exception as exc:
            raised = f"{type(exc).__name__}: {exc}"
        await worker.provider.close()
    finally:
        await script.close()
        server.close()
        await server.wait_closed()

    message = await store.get(item.email.message_id)
    assert len(script.bodies) == 1
    assert message is not None and message.status is Status.SENT, (
        message and message.status,
        raised,
    )
