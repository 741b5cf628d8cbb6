"""The bounce listener while PostgreSQL is down: 451 (the sending MTA keeps the bounce
and tries again), nothing half-written; once the database is back the same bounce is
recorded. Runs against a cluster this test creates and stops itself."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from aiosmtpd.smtp import SMTP

from odiseo.bounce_service import BounceService
from odiseo.domain.events import EventType
from odiseo.domain.models import EventFilter
from odiseo.smtp.bounces import BounceHandler
from odiseo.storage.postgres import PostgresStore
from tests.api.smtp.conftest import PATHS
from tests.api.smtp.test_bounce_listener import dsn_for, send
from tests.support.factories import new_email
from tests.support.pgcluster import ThrowawayCluster
from tests.support.smtp import free_port


class _Listener:
    def __init__(self, port: int) -> None:
        self.port = port


async def test_a_bounce_during_an_outage_is_refused_with_451_then_taken(
    cluster: ThrowawayCluster,
) -> None:
    store = PostgresStore(cluster.url, schema="odiseo")
    await store.migrate()
    item = new_email(to="nobody@example.org")
    await store.enqueue([item], now=datetime.now(UTC))
    message_id = item.email.message_id
    handler = BounceHandler(BounceService(store, return_paths=PATHS))
    port = free_port()
    server = await asyncio.get_running_loop().create_server(
        lambda: SMTP(handler, hostname="bounces.odiseo.test"), host="127.0.0.1", port=port
    )
    listener = _Listener(port)
    try:
        await asyncio.to_thread(cluster.stop, "immediate")
        code, text = await send(listener, PATHS.address(message_id), dsn_for(message_id))
        assert code == 451, (code, text)
        assert "try again" in text

        await asyncio.to_thread(cluster.start)
        code, text = await send(listener, PATHS.address(message_id), dsn_for(message_id))
        assert code == 250, (code, text)
        page, _ = await store.outcomes.events(EventFilter(), limit=10, before=None)
        assert [p.event.type for p in page] == [EventType.EMAIL_BOUNCED]
        assert await store.outcomes.suppression("nobody@example.org") is not None
    finally:
        server.close()
        await server.wait_closed()
        await store.close()
