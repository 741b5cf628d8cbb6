"""Queue mail in your own transaction, end to end: the README's examples (plain SQL through
psql, asyncpg, psycopg, SQLAlchemy, Django in a process of its own) and psycopg2 queue
mail in an application's transaction, and a running `odiseo worker` delivers it to a
real SMTP server; a rollback sends nothing and leaves no row.

The worker polls once a minute here: a message delivered within the test's timeout was
delivered because the function's NOTIFY woke the worker at commit. How long that
takes is measured in bench/transactional.py, not asserted.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import psycopg
import psycopg2
import pytest
from sqlalchemy import create_engine
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from odiseo.transactional import enqueue
from tests.support.postgres import TEST_DATABASE_URL
from tests.support.processes import Launcher, Process, poll
from tests.support.readme import readme_block
from tests.support.smtp import SmtpServer

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.postgres,
    pytest.mark.parametrize("engine", ["postgres"]),
]


@pytest.fixture
def worker(launcher: Launcher, env: dict[str, str]) -> Process:
    """`odiseo worker`, started as users start it: it migrates, which installs the
    function and publishes the settings it applies; it then waits, polling once a minute."""
    process = launcher.start(["worker"], {**env, "EMAIL_WORKER_POLL_INTERVAL": "60"})
    process.wait_for_log("started")
    return process


@pytest.fixture
def app_schema(database: dict[str, str]) -> Iterator[str]:
    """The application's own tables (orders), in a schema of its own beside Odiseo's."""
    name = f"app_{uuid.uuid4().hex[:10]}"
    run(
        f'CREATE SCHEMA "{name}"',
        f'CREATE TABLE "{name}".orders (id int PRIMARY KEY, customer text)',
    )
    try:
        yield name
    finally:
        run(f'DROP SCHEMA "{name}" CASCADE')


def run(*statements: str) -> list[Any]:
    async def go() -> list[Any]:
        conn = await asyncpg.connect(TEST_DATABASE_URL)
        try:
            return [await conn.fetch(s) for s in statements]
        finally:
            await conn.close()

    return asyncio.run(go())


def example(language: str, containing: str, schema: str) -> str:
    """A README example, for Odiseo's schema of this test."""
    code = readme_block(language, containing)
    return code.replace('schema="odiseo"', f'schema="{schema}"').replace(
        "odiseo.enqueue(", f'"{schema}".enqueue('
    )


def app_url(driver: str, app_schema: str) -> str:
    """TEST_DATABASE_URL for `driver`, with the application's schema first on its path."""
    base = TEST_DATABASE_URL.replace("postgresql://", f"postgresql+{driver}://", 1)
    return base if driver == "asyncpg" else f"{base}?options=-csearch_path%3D{app_schema}"


def delivered(smtp_server: SmtpServer, worker: Process, subjects: list[str]) -> None:
    try:
        got = smtp_server.wait_for(len(subjects), timeout=30)
    except AssertionError as exc:
        raise AssertionError(f"{exc}{worker.output()}") from None
    assert sorted(r.message["Subject"] for r in got) == sorted(subjects)


def stored(message_id: str, schema: str) -> dict[str, Any] | None:
    (rows,) = run(f"""SELECT status FROM "{schema}".emails WHERE message_id = '{message_id}'""")
    return dict(rows[0]) if rows else None


# -- the README's examples ---------------------------------------------------------------------


def test_every_readme_example_queues_mail_a_running_worker_delivers(
    worker: Process,
    smtp_server: SmtpServer,
    database: dict[str, str],
    app_schema: str,
    tmp_path: Path,
) -> None:
    schema = database["SCHEMA_NAME"]
    examples: list[tuple[str, Callable[[], object]]] = [
        ("Order 1042", lambda: plain_sql(schema, app_schema)),
        ("Order 1", lambda: with_asyncpg(schema, app_schema)),
        ("Order 2", lambda: with_psycopg(schema, app_schema)),
        ("Order 3", lambda: with_sqlalchemy(schema, app_schema)),
        ("Order 4", lambda: with_sqlalchemy_async(schema, app_schema)),
        ("Order 5", lambda: with_django(schema, app_schema, tmp_path)),
    ]
    subjects = []
    for subject, place in examples:
        place()
        subjects.append(subject)
        delivered(smtp_server, worker, subjects)  # one at a time: each woke the worker
    (orders,) = run(f'SELECT count(*) AS n FROM "{app_schema}".orders')
    assert orders[0]["n"] == len(examples)
    poll(lambda: run(f"""SELECT 1 FROM "{schema}".emails WHERE status <> 'sent'""") == [[]],
         timeout=15, what="every email recorded sent")  # fmt: skip


def plain_sql(schema: str, app_schema: str) -> None:
    """Through psql, a client process of PostgreSQL's own."""
    done = subprocess.run(
        ["psql", TEST_DATABASE_URL, "-v", "ON_ERROR_STOP=1", "-q"],
        input=example("sql", "SELECT odiseo.enqueue(", schema),
        env={**os.environ, "PGOPTIONS": f"-c search_path={app_schema}"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr


def namespace(code: str) -> dict[str, Any]:
    found: dict[str, Any] = {}
    exec(compile(code, "README.md", "exec"), found)
    return found


def with_asyncpg(schema: str, app_schema: str) -> None:
    place_order = namespace(example("python", "($1, $2)", schema))["place_order"]

    async def go() -> str:
        conn = await asyncpg.connect(TEST_DATABASE_URL, server_settings={"search_path": app_schema})
        try:
            return str(await place_order(conn, 1, "ana@example.com"))
        finally:
            await conn.close()

    assert stored(asyncio.run(go()), schema) is not None


def with_psycopg(schema: str, app_schema: str) -> None:
    place_order = namespace(example("python", '(%s, %s)", (order_id', schema))["place_order"]
    with psycopg.connect(TEST_DATABASE_URL, options=f"-c search_path={app_schema}") as conn:
        assert stored(place_order(conn, 2, "bo@example.com"), schema) is not None


def with_sqlalchemy(schema: str, app_schema: str) -> None:
    place_order = namespace(example("python", "engine.begin()", schema))["place_order"]
    engine = create_engine(app_url("psycopg", app_schema), poolclass=NullPool)
    try:
        assert stored(place_order(engine, 3, "cy@example.com"), schema) is not None
    finally:
        engine.dispose()


def with_sqlalchemy_async(schema: str, app_schema: str) -> None:
    place_order = namespace(example("python", "engine.begin()", schema))["place_order_async"]

    async def go() -> str:
        engine = create_async_engine(
            app_url("asyncpg", app_schema),
            poolclass=NullPool,
            connect_args={"server_settings": {"search_path": app_schema}},
        )
        try:
            return str(await place_order(engine, 4, "di@example.com"))
        finally:
            await engine.dispose()

    assert stored(asyncio.run(go()), schema) is not None


DJANGO_APP = """
import django
from django.conf import settings

settings.configure(DATABASES={{"default": {{
    "ENGINE": "django.db.backends.postgresql", "NAME": {name!r}, "USER": {user!r},
    "HOST": {host!r}, "PORT": {port!r}, "OPTIONS": {{"options": "-c search_path={path}"}},
}}}})
django.setup()

{example}

print(place_order(5, "ed@example.com"))
"""


def run_django(
    template: str, app_schema: str, tmp_path: Path, **values: str
) -> subprocess.CompletedProcess[str]:
    """`template` (a Django project in one file) run in a process of its own, its
    database the test server with the application's schema first on the path."""
    from sqlalchemy.engine import make_url

    url = make_url(TEST_DATABASE_URL)
    script = tmp_path / "django_project.py"
    script.write_text(
        template.format(
            name=url.database,
            user=url.username,
            host=url.host,
            port=str(url.port or 5432),
            path=app_schema,
            **values,
        )
    )
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    return done


def with_django(schema: str, app_schema: str, tmp_path: Path) -> None:
    """In a process of its own, as a Django project runs it."""
    code = textwrap.dedent(example("python", "transaction.atomic()", schema))
    done = run_django(DJANGO_APP, app_schema, tmp_path, example=code)
    assert stored(done.stdout.strip(), schema) is not None


# -- rollback -----------------------------------------------------------------------------------


def test_a_rollback_sends_nothing_and_leaves_no_row(
    worker: Process, smtp_server: SmtpServer, database: dict[str, str], app_schema: str
) -> None:
    schema = database["SCHEMA_NAME"]
    email = {"to": ["ana@example.com"], "subject": "Rolled back", "body": "<p>no</p>"}
    with psycopg2.connect(TEST_DATABASE_URL, options=f"-c search_path={app_schema}") as conn:
        with conn.cursor() as cursor:
            cursor.execute("INSERT INTO orders VALUES (1, 'ana@example.com')")
        rolled_back = enqueue(conn, email, schema=schema)
        conn.rollback()
    conn.close()

    async def asyncpg_rollback() -> str:
        conn = await asyncpg.connect(TEST_DATABASE_URL)
        try:
            tx = conn.transaction()
            await tx.start()
            message_id = str(await enqueue(conn, email, schema=schema))
            await tx.rollback()
            return message_id
        finally:
            await conn.close()

    also_rolled_back = asyncio.run(asyncpg_rollback())
    with psycopg2.connect(TEST_DATABASE_URL) as conn:  # commits at the end of the block
        committed = enqueue(conn, {**email, "subject": "Committed"}, schema=schema)
    conn.close()
    delivered(smtp_server, worker, ["Committed"])
    assert stored(rolled_back, schema) is None and stored(also_rolled_back, schema) is None
    assert stored(committed, schema) is not None
    (orders,) = run(f'SELECT * FROM "{app_schema}".orders')
    assert orders == []
    assert [r.message["Subject"] for r in smtp_server.received] == ["Committed"]


def test_the_worker_fails_what_only_the_message_writer_refuses_with_an_event(
    worker: Process, smtp_server: SmtpServer, database: dict[str, str]
) -> None:
    """The function checks what SQL can; a content_id the writer refuses passes it, and
    the worker ends the message failed with an email.failed event naming the field."""
    schema = database["SCHEMA_NAME"]
    email = {
        "to": ["ana@example.com"],
        "subject": "Logo",
        "body": '<img src="cid:logo one">',
        "attachments": [
            {"filename": "logo.png", "content": "iVBORw0KGgo=", "content_id": "logo one"}
        ],
    }
    with psycopg.connect(TEST_DATABASE_URL) as conn:  # through SQL, not the helper
        message_id = conn.execute(
            f'SELECT "{schema}".enqueue(%s::jsonb)', [json.dumps(email)]
        ).fetchone()[0]

    def failed() -> list[Any]:
        (rows,) = run(
            f"""SELECT ev.type, ev.data::text AS data FROM "{schema}".email_events ev
            JOIN "{schema}".emails e ON e.id = ev.email_id
            WHERE e.message_id = '{message_id}' AND e.status = 'failed'"""
        )
        return rows

    events = poll(failed, timeout=30, what="the message failed")
    (event,) = [e for e in events if e["type"] == "email.failed"]
    reason = json.loads(event["data"])["reason"]
    assert reason.startswith("cannot build message: InvalidEmail: attachments: content_id")
    assert smtp_server.received == []


# -- the Django backend's ODISEO_TRANSACTIONAL --------------------------------------------------

DJANGO_BACKEND_APP = """
import json

import django
from django.conf import settings

settings.configure(
    DATABASES={{"default": {{
        "ENGINE": "django.db.backends.postgresql", "NAME": {name!r}, "USER": {user!r},
        "HOST": {host!r}, "PORT": {port!r}, "OPTIONS": {{"options": "-c search_path={path}"}},
    }}}},
    EMAIL_BACKEND="odiseo_client.django.EmailBackend",
    ODISEO_TRANSACTIONAL=True,
    ODISEO_SCHEMA={schema!r},
    DEFAULT_FROM_EMAIL="Shop <shop@example.com>",
)
django.setup()

from django.core.mail import send_mail
from django.db import connection, transaction
from odiseo_client import Invalid

results = {{}}
with transaction.atomic():
    with connection.cursor() as cursor:
        cursor.execute("INSERT INTO orders VALUES (10, 'ana@example.com')")
    results["committed"] = send_mail("Django committed", "Thanks", None, ["ana@example.com"])
try:
    with transaction.atomic():
        send_mail("Django rolled back", "No", None, ["bo@example.com"])
        raise RuntimeError("the sign-up failed")
except RuntimeError:
    pass
with transaction.atomic():
    with connection.cursor() as cursor:
        cursor.execute("INSERT INTO orders VALUES (11, 'cy@example.com')")
    try:
        send_mail("Refused", "x", "ceo@elsewhere.example", ["cy@example.com"])
    except Invalid as exc:
        results["refused"] = [exc.status, str(exc)]
    results["silent"] = send_mail(
        "Refused", "x", "ceo@elsewhere.example", ["cy@example.com"], fail_silently=True
    )
    results["after"] = send_mail("Django after a refusal", "ok", None, ["cy@example.com"])
print(json.dumps(results))
"""


@pytest.fixture
def shop_worker(launcher: Launcher, env: dict[str, str]) -> Process:
    """`odiseo worker` whose sender (SMTP_FROM_EMAIL) is the Django project's."""
    process = launcher.start(
        ["worker"],
        {**env, "EMAIL_WORKER_POLL_INTERVAL": "60", "SMTP_FROM_EMAIL": "shop@example.com"},
    )
    process.wait_for_log("started")
    return process


def test_the_django_backend_queues_in_the_project_s_transaction(
    shop_worker: Process,
    smtp_server: SmtpServer,
    database: dict[str, str],
    app_schema: str,
    tmp_path: Path,
) -> None:
    """ODISEO_TRANSACTIONAL: send_mail() inside atomic() is queued if and only if the
    transaction commits; a refused email raises Invalid and the transaction goes on."""
    done = run_django(DJANGO_BACKEND_APP, app_schema, tmp_path, schema=database["SCHEMA_NAME"])
    results = json.loads(done.stdout)
    assert results["committed"] == 1 and results["after"] == 1 and results["silent"] == 0
    assert results["refused"][0] == 422
    assert "from_email: ceo@elsewhere.example is not an allowed sender" in results["refused"][1]
    delivered(smtp_server, shop_worker, ["Django committed", "Django after a refusal"])
    (orders,) = run(f'SELECT id FROM "{app_schema}".orders ORDER BY id')
    assert [r["id"] for r in orders] == [10, 11]
    (subjects,) = run(f'SELECT subject FROM "{database["SCHEMA_NAME"]}".emails ORDER BY id')
    assert [r["subject"] for r in subjects] == ["Django committed", "Django after a refusal"]
    assert smtp_server.received[0].message["From"] == "Shop <shop@example.com>"
