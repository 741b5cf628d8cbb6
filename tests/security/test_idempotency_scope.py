"""A client_message_id belongs to the API key that sent it (issue 11, point 15).

One key can neither learn another key's message_id by probing ids (the 409 and the
200 of a resend carried it) nor squat an id so that another application's later send
is refused. Without keys there is one namespace; a rotated key starts a new one.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx
from alembic import command
from pydantic import SecretStr
from sqlalchemy import insert

from odiseo.storage.migrate import alembic_config
from odiseo.storage.tables import emails
from tests.conftest import open_test_store, sqlalchemy_engine
from tests.security.conftest import EMAIL, queue_counts
from tests.support.app import ALL_KEY, SEND_KEY, ClientFactory, SettingsFactory, auth

OTHER_KEY = "otherapp-0123456789abcdef"
KEYED = {**EMAIL, "client_message_id": "order-42"}


async def _send(client: httpx.AsyncClient, key: str, payload: dict[str, Any]) -> httpx.Response:
    return await client.post("/emails", json=payload, headers=auth(key))


async def test_keys_have_separate_namespaces(
    make_settings: SettingsFactory, start_client: ClientFactory
) -> None:
    settings = make_settings()
    keys = settings.api_keys.get_secret_value() + f",{OTHER_KEY}:send"
    client = await start_client(make_settings(api_keys=SecretStr(keys)))

    mine = await _send(client, SEND_KEY, KEYED)
    assert mine.status_code == 202, mine.text
    theirs = await _send(client, OTHER_KEY, {**KEYED, "subject": "Something else"})
    assert theirs.status_code == 202, theirs.text  # not a 409: a key cannot squat an id
    assert theirs.json()["message_id"] != mine.json()["message_id"]

    again = await _send(client, SEND_KEY, KEYED)
    assert again.status_code == 200 and again.json()["message_id"] == mine.json()["message_id"]
    conflict = await _send(client, SEND_KEY, {**KEYED, "subject": "Changed"})
    assert conflict.status_code == 409
    assert conflict.json()["message_id"] == mine.json()["message_id"]

    probe = await _send(client, OTHER_KEY, {**KEYED, "subject": "Probe"})  # learns nothing
    assert probe.status_code == 409  # against its own message, never mine
    assert probe.json()["message_id"] == theirs.json()["message_id"]
    batch = await client.post("/emails/batch", json={"emails": [KEYED]}, headers=auth(OTHER_KEY))
    assert batch.status_code == 202, batch.text
    result = batch.json()["results"][0]
    assert result["message_id"] == theirs.json()["message_id"], result  # a conflict in its scope
    assert (await queue_counts(client))["pending"] == 2


async def test_without_keys_there_is_one_namespace(
    make_settings: SettingsFactory, start_client: ClientFactory
) -> None:
    client = await start_client(make_settings(api_keys=SecretStr("")))
    first = await client.post("/emails", json=KEYED)
    second = await client.post("/emails", json=KEYED)
    assert (first.status_code, second.status_code) == (202, 200)
    assert first.json()["message_id"] == second.json()["message_id"]


async def test_rows_stored_before_scopes_stay_in_the_keyless_namespace(
    database_url: tuple[str, str], make_settings: SettingsFactory, start_client: ClientFactory
) -> None:
    """A database at revision 0006 with a keyed row: after the upgrade, a keyless resend
    finds it; a key's send of the same id is refused without naming the message while
    1.0's constraint stays (before the contract step, c001), and is a new message after."""
    engine = sqlalchemy_engine(*database_url)
    row = {
        "message_id": "0f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0",
        "rfc_message_id": "<0f1e2d3c@odiseo.io>",
        "client_message_id": "order-42",
        "payload_hash": None,
        "status": "sent",
        "priority": 5,
        "max_retries": 3,
        "from_email": "noreply@odiseo.io",
        "to_addrs": ["user@example.com"],
        "cc_addrs": [],
        "bcc_addrs": [],
        "reply_to": [],
        "headers": [],
        "subject": "Hello",
        "tags": [],
        "meta": {},
        "created_at": datetime(2026, 11, 30, tzinfo=UTC),
        "updated_at": datetime(2026, 11, 30, tzinfo=UTC),
    }
    try:
        async with engine.begin() as conn:
            if engine.dialect.name == "postgresql":
                schema = database_url[1]
                await conn.exec_driver_sql(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
            await conn.run_sync(lambda sync: command.upgrade(alembic_config(sync), "0006"))
            await conn.execute(insert(emails).values(**row))
    finally:
        await engine.dispose()
    keyless = await start_client(make_settings(api_keys=SecretStr("")))
    again = await keyless.post("/emails", json=KEYED)
    assert again.status_code in (200, 409), again.text
    assert again.json()["message_id"] == row["message_id"]
    keyed = await start_client(make_settings())
    held = await _send(keyed, ALL_KEY, KEYED)
    assert held.status_code == 409, held.text
    assert "message_id" not in held.json() and row["message_id"] not in held.text
    store = open_test_store(*database_url)
    try:
        assert await store.migrate() == ["c001"]
        assert await store.migrate(contract=True) == []
    finally:
        await store.close()
    fresh = await _send(keyed, ALL_KEY, KEYED)
    assert fresh.status_code == 202 and fresh.json()["message_id"] != row["message_id"]
