"""kill -9 of `odiseo worker` processes while they send mail and deliver its webhooks:
every email.sent event still reaches the receiver, verified, under one webhook-id.

The events are written with the results they announce and fanned out in one
transaction (storage/deliveries.py); a delivery whose worker dies mid-POST is leased,
and sent again once its lease runs out, with the same webhook-id.
"""

from __future__ import annotations

import asyncio
import random
import time
from datetime import UTC, datetime

import pytest

from odiseo.webhooks.service import WebhookService
from tests.conftest import open_test_store
from tests.faults.conftest import enqueue_many
from tests.support.processes import Launcher, base_env, poll, smtp_env
from tests.support.receiver import Hit, Receiver
from tests.support.smtp import SmtpServer

MESSAGES = 200
KILLS = 5


def _endpoint(database: dict[str, str], url: str) -> str:
    """An endpoint for email.sent, made as the API would; its secret."""

    async def go() -> str:
        store = open_test_store(database["DATABASE_URL"], database.get("SCHEMA_NAME", "unused"))
        try:
            await store.migrate()
            hooks = WebhookService(store=store.webhooks, allow_private=True)
            _, secret = await hooks.create(
                url=url, events=["email.sent"], description=None, now=datetime.now(UTC)
            )
            return secret
        finally:
            await store.close()

    return asyncio.run(go())


def _message_ids(hits: list[Hit], secret: str) -> dict[str, set[str]]:
    """Each message's webhook-ids, from deliveries that verify."""
    found: dict[str, set[str]] = {}
    for hit in list(hits):
        body = hit.verify(secret)
        found.setdefault(body["data"]["message_id"], set()).add(hit.webhook_id)
    return found


@pytest.mark.e2e
def test_kill_9_while_delivering_webhooks_loses_none(
    launcher: Launcher, database: dict[str, str], smtp_server: SmtpServer
) -> None:
    receiver = Receiver().start()
    try:
        secret = _endpoint(database, receiver.url)
        expected = {rfc.strip("<>").partition("@")[0] for rfc in enqueue_many(database, MESSAGES)}
        receiver.delay = 0.02  # deliveries are in flight when the kills come
        env = base_env(
            **database,
            **smtp_env(smtp_server),
            EMAIL_WORKER_LEASE_SECONDS="1",
            EMAIL_WORKER_POLL_INTERVAL="0.1",
            WEBHOOK_ALLOW_PRIVATE="true",
            WEBHOOK_RETRY_SCHEDULE=",".join(["0"] + ["0.5"] * 20),
            WEBHOOK_TIMEOUT_SECONDS="1",
            WEBHOOK_LEASE_SECONDS="3",
            WEBHOOK_POLL_INTERVAL="0.1",
        )
        rng = random.Random()
        for number in range(KILLS):
            victim = launcher.start(["worker"], env, name=f"victim{number}")
            goal = len(receiver.hits) + rng.randint(1, 30)
            poll(lambda: len(receiver.hits) >= goal, timeout=60, what="webhook deliveries")  # noqa: B023
            time.sleep(rng.random() * 0.05)
            victim.popen.kill()
            victim.popen.wait(10)
        launcher.start(["worker"], env, name="survivor")
        poll(
            lambda: set(_message_ids(receiver.hits, secret)) >= expected,
            timeout=180,
            what="an email.sent webhook for every message",
        )
        delivered = _message_ids(receiver.hits, secret)
    finally:
        receiver.stop()
    assert set(delivered) == expected
    assert all(len(ids) == 1 for ids in delivered.values())  # one webhook-id per event
    print(f"\n{len(receiver.hits)} deliveries ({receiver.cut} cut) for {MESSAGES} events")
