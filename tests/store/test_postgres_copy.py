"""PostgreSQL's bulk enqueue COPYs new keyed rows after looking their keys up; a key
stored by another request in between must not fail the call or be stored twice."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import asyncpg

from odiseo.domain.models import Status
from odiseo.storage.postgres import PostgresStore
from tests.support.factories import new_email
from tests.support.postgres import TEST_DATABASE_URL, drop_schema, new_schema_name, require_postgres

T0 = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


async def test_a_key_stored_by_another_request_during_the_copy_becomes_a_duplicate() -> None:
    await require_postgres()
    schema = new_schema_name()
    store = PostgresStore(TEST_DATABASE_URL, schema=schema)
    other = await asyncpg.connect(TEST_DATABASE_URL, server_settings={"search_path": schema})
    try:
        await store.migrate()
        rival = new_email(client_message_id="contested", payload_hash="h")
        (stored_first,) = await store.enqueue([rival], now=T0)
        await other.execute("DELETE FROM emails")  # the row is to come from `other`, uncommitted
        items = [new_email(client_message_id=f"k{n}", payload_hash="h") for n in range(9)]
        mine = new_email(client_message_id="contested", payload_hash="h")
        items.append(mine)

        # The other request has inserted the key but not committed: our lookup cannot
        # see it, so the COPY goes ahead and waits on the key's index entry.
        transaction = other.transaction()
        await transaction.start()
        await other.execute(
            "INSERT INTO emails (message_id, rfc_message_id, client_message_id, payload_hash, "
            "status, priority, attempts, max_retries, next_attempt_at, from_email, to_addrs, "
            "cc_addrs, bcc_addrs, reply_to, headers, subject, attachment_count, tags, meta, "
            "created_at, updated_at) VALUES ($1, $2, 'contested', 'h', 'pending', 5, 0, 3, $3, "
            "'noreply@odiseo.test', '[]', '[]', '[]', '[]', '[]', 'Hi', 0, '[]', '{}', $3, $3)",
            rival.email.message_id,
            rival.email.rfc_message_id,
            T0,
        )
        enqueue = asyncio.create_task(store.enqueue(items, now=T0))
        await asyncio.sleep(0.3)
        assert not enqueue.done()  # blocked behind the uncommitted key
        await transaction.commit()
        results = await asyncio.wait_for(enqueue, 10)

        assert [r.created for r in results] == [True] * 9 + [False]
        assert results[-1].message_id == stored_first.message_id == rival.email.message_id
        assert results[-1].same_payload
        assert await store.get(mine.email.message_id) is None
        assert (await store.counts())[Status.PENDING] == 10
    finally:
        await other.close()
        await store.close()
        await drop_schema(schema)
