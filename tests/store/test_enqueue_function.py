"""The SQL function enqueue(email jsonb): queue mail in the application's own transaction
(PostgreSQL only; README, "Queue mail in your own transaction").

Each test calls it as an application would, on connections of its own (asyncpg here;
the other drivers in tests/e2e/test_transactional.py), beside the store's pool.
"""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest
import uuid_utils
from sqlalchemy import JSON

from odiseo import transactional
from odiseo.errors import Duplicate, InvalidEmail, OdiseoError, TooLarge
from odiseo.render_process import ProcessRenderer
from odiseo.requests import EmailIn
from odiseo.service import EmailService, Sender
from odiseo.storage.contract import Store
from odiseo.storage.postgres import PostgresStore
from odiseo.storage.tables import INSERT_COLUMNS, emails
from tests.support.postgres import TEST_DATABASE_URL
from tests.support.readme import readme_block

pytestmark = [pytest.mark.postgres, pytest.mark.parametrize("engine", ["postgres"])]

SENDER = Sender(
    email="noreply@shop.example",
    name="Shop",
    allowed=frozenset({"billing@shop.example", "@news.shop.example"}),
)
EMAIL: dict[str, Any] = {"to": ["ana@example.com"], "subject": "Welcome", "body": "<p>Hi</p>"}


def make_service(store: Store, *, max_message_bytes: int = 10 * 1024 * 1024) -> EmailService:
    renderer = ProcessRenderer(
        None, timeout=5, memory_bytes=256 * 1024 * 1024, max_rendered_bytes=1 << 20, processes=1
    )
    return EmailService(
        store=store,
        renderer=renderer,
        sender=SENDER,
        max_retries=4,
        max_message_bytes=max_message_bytes,
    )


@pytest.fixture
async def service(store: Store) -> AsyncIterator[EmailService]:
    """The service whose settings the function applies: published, as `odiseo migrate` does."""
    made = make_service(store)
    await made.publish_settings(now=datetime.now(UTC))
    try:
        yield made
    finally:
        await made.renderer.close()


@pytest.fixture
def schema(store: Store) -> str:
    assert isinstance(store, PostgresStore)
    return store.schema


@pytest.fixture
async def app_conn() -> AsyncIterator[asyncpg.Connection]:
    """An application's own connection (no search_path of Odiseo's)."""
    conn = await asyncpg.connect(TEST_DATABASE_URL)
    try:
        yield conn
    finally:
        await conn.close()


async def call(conn: asyncpg.Connection, schema: str, email: Any) -> str:
    """The function called in plain SQL, as any language would."""
    text = email if isinstance(email, str) else json.dumps(email)
    return str(await conn.fetchval(f'SELECT "{schema}".enqueue($1::text::jsonb)', text))


async def count(conn: asyncpg.Connection, schema: str) -> int:
    return int(await conn.fetchval(f'SELECT count(*) FROM "{schema}".emails'))


# -- the row ---------------------------------------------------------------------------


async def test_the_function_writes_the_row_the_store_writes(
    service: EmailService, store: Store, schema: str, app_conn: asyncpg.Connection
) -> None:
    """The one-path rule: the same request through POST /emails' service and through the
    function gives the same row, column for column (those that must differ aside; JSON
    compared as values, both written in ASCII with \\u escapes, which search relies on),
    and the same attachment rows."""
    email = {
        "to": ["Ana@Example.COM", "bo@exämple.org"],
        "cc": ["cc@example.com"],
        "reply_to": "help@shop.example",
        "subject": "  Your order ✓ ",
        "body": "<p>Thanks</p>",
        "text": "Thanks",
        "from_email": "billing@shop.example",
        "headers": {"X-Order": "1042"},
        "priority": 2,
        "tags": ["order", "ünïcode"],
        "metadata": {"order": 1042, "note": "ça va"},
        "expires_at": "2031-01-01T00:00:00+02:00",
        "attachments": [
            {"filename": " invoice.pdf ", "content": base64.b64encode(b"%PDF").decode()}
        ],
    }
    now = datetime.now(UTC)
    by_store = await service.submit(EmailIn.model_validate(email).to_request(), now=now)
    by_function = await transactional.enqueue(app_conn, email, schema=schema)

    json_columns = {c.name for c in emails.c if isinstance(c.type, JSON)}
    columns = ", ".join(f"{c}::text" if c in json_columns else c for c in INSERT_COLUMNS)
    rows = {
        r["message_id"]: dict(r)
        for r in await app_conn.fetch(f'SELECT {columns} FROM "{schema}".emails')
    }
    stored, written = rows[by_store.message_id], rows[by_function]
    assert all(written[c].isascii() for c in json_columns)

    def values(row: dict[str, Any]) -> dict[str, Any]:
        differ = {"message_id", "rfc_message_id", "idempotency_scope", "created_at",
                  "updated_at", "next_attempt_at"}  # fmt: skip
        return {k: json.loads(v) if k in json_columns else v
                for k, v in row.items() if k not in differ}  # fmt: skip

    assert values(written) == values(stored)
    assert written["next_attempt_at"] == written["created_at"]
    assert written["rfc_message_id"] == f"<{by_function}@shop.example>"
    assert written["to_addrs"] == '["Ana@example.com", "bo@xn--exmple-cua.org"]'
    assert written["tags"] == '["order", "\\u00fcn\\u00efcode"]'
    files = await app_conn.fetch(
        f"SELECT e.message_id, a.position, a.filename, a.content_type, a.content_id, a.data "
        f'FROM "{schema}".email_attachments a JOIN "{schema}".emails e ON e.id = a.email_id'
    )
    by_message = {r["message_id"]: tuple(r)[1:] for r in files}
    assert by_message[by_function] == by_message[by_store.message_id]
    assert by_message[by_function] == (0, "invoice.pdf", "application/pdf", None, b"%PDF")


async def test_the_function_s_message_ids_are_version_7_like_the_service_s(
    service: EmailService, schema: str, app_conn: asyncpg.Connection
) -> None:
    """Time-ordered like service.new_message_id's (the message_id index is written at
    its end): the moment's milliseconds first, laid out as uuid-utils lays them out,
    then random bits."""
    before = datetime.now(UTC)
    made = [uuid.UUID(await call(app_conn, schema, EMAIL)) for _ in range(3)]
    after = datetime.now(UTC)
    assert all(u.version == 7 and u.variant == uuid.RFC_4122 for u in made)
    stamps = [u.int >> 80 for u in made]
    assert int(before.timestamp() * 1000) <= stamps[0] <= stamps[1] <= stamps[2]
    assert stamps[2] <= int(after.timestamp() * 1000) + 1

    at = datetime(2026, 12, 2, 1, 30, 15, 123456, tzinfo=UTC)
    helper = f'SELECT "{schema}".enqueue_uuid7($1) FROM generate_series(1, 2000)'
    ids = [str(r[0]) for r in await app_conn.fetch(helper, at)]
    library = str(uuid_utils.uuid7(nanoseconds=int(at.timestamp() * 1000) * 1_000_000))
    assert {i[:15] for i in ids} == {library[:15]}  # time, then the version digit
    assert len(set(ids)) == len(ids) and {i[19] for i in ids} == set("89ab")
    for position in (15, 20, 25, 30, 35):
        assert len({i[position] for i in ids}) == 16


# -- the transaction decides --------------------------------------------------------------


@pytest.fixture
async def heard(store: Store) -> AsyncIterator[asyncio.Queue[str]]:
    """What the workers' channel carries, as a worker's LISTEN hears it."""
    assert isinstance(store, PostgresStore)
    queue: asyncio.Queue[str] = asyncio.Queue()
    listener = await asyncpg.connect(TEST_DATABASE_URL)
    await listener.add_listener(store.channel, lambda *args: queue.put_nowait(args[3]))
    try:
        yield queue
    finally:
        await listener.close()


async def marker(conn: asyncpg.Connection, store: Store) -> None:
    """A NOTIFY of another session's: NOTIFYs arrive in commit order, so one sent before
    ours is heard first, and one sent when ours never comes is heard first too."""
    assert isinstance(store, PostgresStore)
    await conn.execute("SELECT pg_notify($1, 'marker')", store.channel)


async def test_a_rollback_leaves_no_row_and_wakes_nobody(
    service: EmailService,
    store: Store,
    schema: str,
    app_conn: asyncpg.Connection,
    heard: asyncio.Queue[str],
) -> None:
    tx = app_conn.transaction()
    await tx.start()
    message_id = await call(app_conn, schema, EMAIL)
    await tx.rollback()
    await marker(app_conn, store)
    assert await asyncio.wait_for(heard.get(), 10) == "marker"
    assert await count(app_conn, schema) == 0
    assert await store.get(message_id) is None


async def test_a_commit_stores_the_row_and_wakes_the_workers_at_commit(
    service: EmailService,
    store: Store,
    schema: str,
    app_conn: asyncpg.Connection,
    heard: asyncio.Queue[str],
) -> None:
    other = await asyncpg.connect(TEST_DATABASE_URL)
    try:
        async with app_conn.transaction():
            message_id = await call(app_conn, schema, EMAIL)
            await marker(other, store)  # while ours is not committed yet
    finally:
        await other.close()
    assert await asyncio.wait_for(heard.get(), 10) == "marker"
    assert await asyncio.wait_for(heard.get(), 10) == ""
    stored = await store.get(message_id)
    assert stored is not None and stored.status == "pending"


async def test_a_scheduled_message_wakes_nobody(
    service: EmailService,
    store: Store,
    schema: str,
    app_conn: asyncpg.Connection,
    heard: asyncio.Queue[str],
) -> None:
    message_id = await call(app_conn, schema, {**EMAIL, "send_at": "2040-01-01T09:00:00"})
    await marker(app_conn, store)
    assert await asyncio.wait_for(heard.get(), 10) == "marker"
    stored = await store.get(message_id)
    assert stored is not None and stored.status == "scheduled"
    assert stored.next_attempt_at == datetime(2040, 1, 1, 9, tzinfo=UTC)  # no zone: UTC


# -- refusals ---------------------------------------------------------------------------


REFUSED = [
    ({"subject": "s", "body": "b"}, "OD422", "to: at least one address is required"),
    ({**EMAIL, "to": ["no-at-sign"]}, "OD422", "to.0: value is not a valid email address"),
    ({**EMAIL, "to": ["a@b@example.com"]}, "OD422", "to.0: value is not a valid email address"),
    ({**EMAIL, "cc": ["a b@example.com"]}, "OD422", "cc.0: value is not a valid email address"),
    ({**EMAIL, "to": ["a@exämple.com"]}, "OD422", "to.0: an international domain"),
    ({**EMAIL, "to": ["ä@example.com"]}, "OD422", "to.0: value is not a valid email address"),
    ({**EMAIL, "bcc": ["=?utf-8?q?x?=@example.com"]}, "OD422", "bcc.0: value is not a valid"),
    ({**EMAIL, "subject": "a\r\nBcc: x@evil.example"}, "OD422", "subject: must not contain"),
    ({**EMAIL, "subject": "  "}, "OD422", "subject: required"),
    ({"to": ["a@example.com"], "subject": "s"}, "OD422", "body: required"),
    ({**EMAIL, "from_name": "x\u2028y"}, "OD422", "from_name: must not contain"),
    ({**EMAIL, "headers": {"Bcc": "x@evil.example"}}, "OD422", "headers: Bcc is set by Odiseo"),
    ({**EMAIL, "headers": {"Content-Type": "x"}}, "OD422", "headers: Content-Type is set"),
    ({**EMAIL, "headers": {"X-A": "1\n2"}}, "OD422", "headers.X-A: must not contain"),
    ({**EMAIL, "headers": {"X A": "1"}}, "OD422", "headers: 'X A' is not a valid header name"),
    ({**EMAIL, "from_email": "ceo@elsewhere.example"}, "OD422", "is not an allowed sender"),
    ({**EMAIL, "priority": 10}, "OD422", "priority: must be a whole number from 0 to 9"),
    ({**EMAIL, "send_at": "tomorrow-ish"}, "OD422", "send_at: must be a date and time"),
    ({**EMAIL, "tags": [""]}, "OD422", "tags: each is a string of 1 to 64 characters"),
    ({**EMAIL, "metadata": {"x": "y" * 5000}}, "OD422", "metadata: must be at most 4096 bytes"),
    ({**EMAIL, "attachments": [{"filename": "a", "content": "not base64!"}]}, "OD422",
     "attachments.0.content: is not valid base64"),
    ({**EMAIL, "attachments": [{"filename": "a", "content": "", "content_type": "text"}]},
     "OD422", "attachments.0.content_type: must be type/subtype"),
    ({**EMAIL, "template_id": "welcome"}, "OD422", "template_id: templates are rendered"),
    ({**EMAIL, "unsubscribe": True}, "OD422", "unsubscribe: the signed link is made"),
    ({**EMAIL, "bogus": 1}, "OD422", "bogus: extra inputs are not permitted"),
    ([1, 2], "OD422", "body: must be a JSON object"),
    ({**EMAIL, "body": "x" * 3000}, "OD413", "message content is 3000 bytes; the limit is 2048"),
]  # fmt: skip


@pytest.mark.parametrize(("email", "sqlstate", "message"), REFUSED)
async def test_what_the_function_refuses_raises_its_documented_sqlstate(
    store: Store,
    schema: str,
    app_conn: asyncpg.Connection,
    email: Any,
    sqlstate: str,
    message: str,
) -> None:
    small = make_service(store, max_message_bytes=2048)  # MAX_MESSAGE_BYTES, published
    await small.publish_settings(now=datetime.now(UTC))
    await small.renderer.close()
    with pytest.raises(asyncpg.PostgresError) as raised:
        await call(app_conn, schema, email)
    assert raised.value.sqlstate == sqlstate
    assert message in str(raised.value)
    assert await count(app_conn, schema) == 0


async def test_text_that_is_not_json_is_postgresql_s_own_error(
    service: EmailService, schema: str, app_conn: asyncpg.Connection
) -> None:
    with pytest.raises(asyncpg.InvalidTextRepresentationError) as raised:
        await call(app_conn, schema, '{"to": ["a@example.com"')
    assert raised.value.sqlstate == "22P02"


async def test_after_a_refusal_in_a_savepoint_the_transaction_goes_on(
    service: EmailService, store: Store, schema: str, app_conn: asyncpg.Connection
) -> None:
    await app_conn.execute("CREATE TEMP TABLE orders (id int)")
    async with app_conn.transaction():
        await app_conn.execute("INSERT INTO orders VALUES (1)")
        with pytest.raises(asyncpg.PostgresError) as raised:
            async with app_conn.transaction():  # a savepoint
                await call(app_conn, schema, {**EMAIL, "to": ["nobody"]})
        assert raised.value.sqlstate == "OD422"
        with pytest.raises(InvalidEmail, match="is not an allowed sender"):
            async with app_conn.transaction():
                await transactional.enqueue(
                    app_conn, {**EMAIL, "from_email": "x@elsewhere.example"}, schema=schema
                )
        message_id = await call(app_conn, schema, EMAIL)
        await app_conn.execute("INSERT INTO orders VALUES (2)")
    assert await app_conn.fetchval("SELECT count(*) FROM orders") == 2
    assert await store.get(message_id) is not None
    assert await count(app_conn, schema) == 1


async def test_without_published_settings_the_function_says_so(
    store: Store, schema: str, app_conn: asyncpg.Connection
) -> None:
    with pytest.raises(asyncpg.PostgresError) as raised:
        await call(app_conn, schema, EMAIL)
    assert raised.value.sqlstate == "OD503"
    with pytest.raises(OdiseoError, match="run odiseo migrate"):
        await transactional.enqueue(app_conn, EMAIL, schema=schema)


async def test_republished_settings_apply_at_once(
    service: EmailService, store: Store, schema: str, app_conn: asyncpg.Connection
) -> None:
    other = {**EMAIL, "from_email": "team@new.example"}
    with pytest.raises(InvalidEmail):
        await transactional.enqueue(app_conn, other, schema=schema)
    wider = EmailService(
        store=store,
        renderer=service.renderer,
        sender=Sender(email=SENDER.email, name=None, allowed=frozenset({"@new.example"})),
        max_retries=1,
    )
    await wider.publish_settings(now=datetime.now(UTC))
    stored = await store.get(await transactional.enqueue(app_conn, other, schema=schema))
    assert stored is not None
    assert (stored.email.from_email, stored.email.from_name, stored.max_retries) == (
        "team@new.example", None, 1)  # fmt: skip


# -- the Python helper ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("email", "detail"),
    [
        ({"to": [], "subject": "s", "body": "b"}, "to: List should have at least 1 item"),
        ({**EMAIL, "to": ["nobody"]}, "to.0: value is not a valid email address"),
        ({**EMAIL, "priority": "high"}, "priority: Input should be a valid integer"),
    ],
)
async def test_the_helper_refuses_with_the_api_s_detail_before_the_database_is_asked(
    email: dict[str, Any], detail: str, client: Any
) -> None:
    """No connection at all: the model refuses first, with the API's own 422 detail."""
    answer = await client.post("/emails", json=email)
    assert answer.status_code == 422
    with pytest.raises(InvalidEmail) as raised:
        transactional.enqueue(object(), email)
    assert raised.value.message == answer.json()["detail"]
    assert raised.value.message.startswith(detail)


async def test_the_helper_raises_odiseo_errors_for_the_function_s_refusals(
    store: Store, schema: str, app_conn: asyncpg.Connection
) -> None:
    small = make_service(store, max_message_bytes=2048)
    await small.publish_settings(now=datetime.now(UTC))
    await small.renderer.close()
    with pytest.raises(TooLarge, match="the limit is 2048"):
        await transactional.enqueue(app_conn, {**EMAIL, "body": "x" * 4096}, schema=schema)
    first = await transactional.enqueue(
        app_conn, {**EMAIL, "client_message_id": "k"}, schema=schema
    )
    with pytest.raises(Duplicate) as raised:
        changed = {**EMAIL, "subject": "Other", "client_message_id": "k"}
        await transactional.enqueue(app_conn, changed, schema=schema)
    assert raised.value.message_id == first


# -- idempotency ----------------------------------------------------------------------------


async def test_twenty_concurrent_transactions_with_one_key_create_one_email(
    service: EmailService, store: Store, schema: str
) -> None:
    email = {**EMAIL, "client_message_id": "signup-42"}
    conns = [await asyncpg.connect(TEST_DATABASE_URL) for _ in range(20)]
    started = asyncio.Barrier(20)

    async def one(conn: asyncpg.Connection) -> str:
        async with conn.transaction():
            await started.wait()  # every transaction open before any inserts
            message_id = await call(conn, schema, email)
            await asyncio.sleep(0.05)  # holding its row: the others wait on the key
            return message_id

    try:
        ids = await asyncio.gather(*(one(c) for c in conns))
    finally:
        for conn in conns:
            await conn.close()
    assert len(set(ids)) == 1
    assert await store.get(ids[0]) is not None
    async with store.db.read() as tx:  # type: ignore[attr-defined]
        from sqlalchemy import func, select

        assert await tx.scalar(select(func.count()).select_from(emails)) == 1


async def test_the_same_key_twice_is_the_same_email_even_written_differently(
    service: EmailService, schema: str, app_conn: asyncpg.Connection
) -> None:
    """The payload check hashes the request as read: a default spelled out, a single
    reply_to instead of a list, a host in capitals are the same request."""
    first = await call(app_conn, schema, {**EMAIL, "client_message_id": "k", "reply_to": "r@x.io"})
    again = {**EMAIL, "client_message_id": "k", "reply_to": ["r@X.IO"], "priority": 5, "cc": []}
    assert await call(app_conn, schema, again) == first
    assert await count(app_conn, schema) == 1


async def test_keys_through_sql_are_not_the_api_s_keys(
    service: EmailService, store: Store, schema: str, app_conn: asyncpg.Connection
) -> None:
    """One namespace per database role ('sql:' + the role), apart from every API key's."""
    request = EmailIn.model_validate({**EMAIL, "client_message_id": "k"}).to_request()
    by_api = await service.submit(request, now=datetime.now(UTC), scope="")
    by_sql = await transactional.enqueue(
        app_conn, {**EMAIL, "client_message_id": "k"}, schema=schema
    )
    assert by_sql != by_api.message_id
    stored = await app_conn.fetchval(
        f'SELECT idempotency_scope FROM "{schema}".emails WHERE message_id = $1', by_sql
    )
    assert stored == "sql:postgres"


# -- who may call it ----------------------------------------------------------------------


@pytest.fixture
async def roles(schema: str, app_conn: asyncpg.Connection) -> AsyncIterator[tuple[str, str]]:
    """A role made and granted as the README says (it may only call the function), and
    one that may use the schema but was granted nothing else."""
    mailer, other = f"mailer_{uuid.uuid4().hex[:8]}", f"other_{uuid.uuid4().hex[:8]}"
    for statement in grant_statements(schema, mailer):
        await app_conn.execute(statement)
    await app_conn.execute(f"CREATE ROLE {other} LOGIN")
    await app_conn.execute(f'GRANT USAGE ON SCHEMA "{schema}" TO {other}')
    try:
        yield mailer, other
    finally:
        for name in (mailer, other):
            await app_conn.execute(f"DROP OWNED BY {name}")
            await app_conn.execute(f"DROP ROLE {name}")


def grant_statements(schema: str, role: str) -> list[str]:
    """The README's statements, for `schema` and `role`."""
    sql = readme_block("sql", "GRANT EXECUTE")
    sql = sql.replace("SCHEMA odiseo", f'SCHEMA "{schema}"').replace("odiseo.", f'"{schema}".')
    lines = [line.split("--")[0] for line in sql.replace("app_mailer", role).splitlines()]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]


async def as_role(role: str) -> asyncpg.Connection:
    return await asyncpg.connect(TEST_DATABASE_URL.replace("postgres@", f"{role}@", 1))


async def test_the_mailer_role_may_only_call_the_function(
    service: EmailService, store: Store, schema: str, roles: tuple[str, str]
) -> None:
    mailer, _ = roles
    conn = await as_role(mailer)
    try:
        message_id = await call(conn, schema, {**EMAIL, "client_message_id": "k"})
        assert await store.get(message_id) is not None
        forbidden = [
            f'SELECT * FROM "{schema}".emails',
            f'SELECT * FROM "{schema}".enqueue_settings',
            f"""INSERT INTO "{schema}".emails (message_id) VALUES ('x')""",
            f"""UPDATE "{schema}".emails SET status = 'sent'""",
            f'DELETE FROM "{schema}".emails',
            f'UPDATE "{schema}".enqueue_settings SET max_message_bytes = 1',
            f'SELECT * FROM "{schema}".email_attachments',
            f"""SELECT "{schema}".enqueue_text('"x"', 'f', 1, true)""",
            f'CREATE TABLE "{schema}".mine (id int)',
            f'CREATE FUNCTION "{schema}".enqueue_json(x int) RETURNS int '
            "LANGUAGE sql AS $$ SELECT 1 $$",
        ]  # fmt: skip
        for statement in forbidden:
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.execute(statement)
        scope = await store.get(message_id)
        assert scope is not None
    finally:
        await conn.close()
    async with store.db.read() as tx:  # type: ignore[attr-defined]
        from sqlalchemy import select

        row = await tx.first(select(emails.c.idempotency_scope, emails.c.status))
    assert row is not None and row["idempotency_scope"] == f"sql:{mailer}"


async def test_nobody_else_may_call_it(
    service: EmailService, schema: str, roles: tuple[str, str]
) -> None:
    """PostgreSQL grants EXECUTE on a new function to PUBLIC: the migration revokes it."""
    _, other = roles
    conn = await as_role(other)
    try:
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await call(conn, schema, EMAIL)
    finally:
        await conn.close()


async def test_the_function_runs_with_a_fixed_search_path_as_its_owner(
    service: EmailService, schema: str, app_conn: asyncpg.Connection
) -> None:
    found = await app_conn.fetchrow(
        "SELECT prosecdef, proconfig, proacl::text[] AS acl FROM pg_proc "
        "WHERE proname = 'enqueue' AND pronamespace = $1::regnamespace",
        f'"{schema}"',
    )
    assert found["prosecdef"] is True
    assert found["proconfig"] == [f"search_path={schema}, pg_catalog, pg_temp", "TimeZone=UTC"]
    assert not any(entry.startswith("=") for entry in found["acl"])  # nothing for PUBLIC
    # A table of the caller's named like ours changes nothing: the path is fixed.
    await app_conn.execute("CREATE TEMP TABLE enqueue_settings (id int)")
    assert uuid.UUID(await call(app_conn, schema, EMAIL))
