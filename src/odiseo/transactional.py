"""Queue an email inside the application's own PostgreSQL transaction.

    with transaction.atomic():              # Django, or any driver's transaction
        order = Order.objects.create(...)
        enqueue(connection, {"to": [user.email], "subject": "Thanks", "body": "..."})

The email is queued if and only if the transaction commits: it is a row that the
SQL function `<SCHEMA_NAME>.enqueue(email jsonb)` inserts in that transaction, and
the workers are woken when it commits (README, "Queue mail in your own
transaction"). `enqueue` first validates the email with the API's own model
(odiseo/requests.py), so a Python caller gets the API's errors before the database
is asked; what only the database knows (allowed senders, sizes, a reused
client_message_id) comes back from the function as a PostgreSQL error with a stable
SQLSTATE, raised here as the same odiseo error the API maps to 422, 413 or 409.
After such an error the transaction is aborted, as after any SQL error: roll back,
or call `enqueue` inside a savepoint (a nested `atomic()`, `conn.begin_nested()`,
`conn.transaction()`) to carry on.

Connections: asyncpg (a connection or a pool's), psycopg 3 (`Connection`,
`AsyncConnection`, cursors), psycopg2, SQLAlchemy (`Connection`, `Session`, and their
async forms), Django's `connection` or a cursor of it, and any DB-API cursor using
`%s` parameters. On the async ones `enqueue` returns an awaitable.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from odiseo.errors import Duplicate, InvalidEmail, OdiseoError, TooLarge
from odiseo.requests import EmailIn, describe_errors
from odiseo.storage.enqueue_function import (
    DUPLICATE,
    INVALID,
    NOT_CONFIGURED,
    TEMPLATE_REFUSED,
    TOO_LARGE,
    UNSUBSCRIBE_REFUSED,
)

__all__ = ["enqueue", "payload"]

DEFAULT_SCHEMA = "odiseo"  # SCHEMA_NAME's default


def enqueue(conn: Any, email: Mapping[str, Any] | EmailIn, *, schema: str = DEFAULT_SCHEMA) -> Any:
    """Queue `email` (a POST /emails body, or an EmailIn) in `conn`'s transaction.

    Returns its message id (a str); on an async connection, an awaitable of it.

    Raises:
        InvalidEmail: the email is refused (the API's 422 detail, or the function's).
        TooLarge: its content exceeds MAX_MESSAGE_BYTES (the API's 413).
        Duplicate: its client_message_id is taken by a different email (the API's 409).
        OdiseoError: Odiseo's schema has no published settings (run `odiseo migrate`).
    """
    document = payload(email)
    function = f"{_quoted(schema)}.enqueue"
    kind = type(conn).__module__.split(".", 1)[0]
    if kind == "asyncpg":
        return _asyncpg(conn, f"SELECT {function}($1::text::jsonb)", document)
    if kind == "sqlalchemy":
        return _sqlalchemy(conn, function, document)
    if kind == "psycopg" and _is_async_psycopg(conn):
        return _psycopg_async(conn, f"SELECT {function}(%s::jsonb)", document)
    return _dbapi(conn, f"SELECT {function}(%s::jsonb)", document)


def payload(email: Mapping[str, Any] | EmailIn) -> str:
    """The JSON the function is given: `email` checked by the API's model, in the form
    the API stores it (addresses in xn-- form, values trimmed, attachment types known).

    Raises:
        InvalidEmail: with the API's 422 `detail`, or for what only the API can do.
    """
    try:
        model = email if isinstance(email, EmailIn) else EmailIn.model_validate(email)
    except ValidationError as exc:
        raise InvalidEmail(describe_errors(exc.errors())) from None
    if model.template_id is not None or model.template_vars:
        raise InvalidEmail(TEMPLATE_REFUSED)
    if model.unsubscribe:
        raise InvalidEmail(UNSUBSCRIBE_REFUSED)
    fields = model.model_dump(
        mode="json",
        exclude_none=True,
        exclude={"template_id", "template_vars", "unsubscribe", "attachments"},
    )
    if model.attachments:
        fields["attachments"] = [
            {
                "filename": file.filename,
                "content": item.content,
                "content_type": file.content_type,
                **({"content_id": file.content_id} if file.content_id is not None else {}),
            }
            for item in model.attachments
            for file in (item.to_attachment(),)
        ]
    return json.dumps(fields)


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


async def _asyncpg(conn: Any, query: str, document: str) -> str:
    try:
        value = await conn.fetchval(query, document)
    except Exception as exc:
        raise _translated(exc) from exc
    return str(value)


def _sqlalchemy(conn: Any, function: str, document: str) -> Any:
    from sqlalchemy import text

    statement = text(f"SELECT {function}(CAST(:email AS jsonb))")
    parameters = {"email": document}
    if _is_async_sqlalchemy(conn):

        async def run() -> str:
            try:
                result = await conn.execute(statement, parameters)
            except Exception as exc:
                raise _translated(exc) from exc
            return str(result.scalar_one())

        return run()
    try:
        return str(conn.execute(statement, parameters).scalar_one())
    except Exception as exc:
        raise _translated(exc) from exc


def _is_async_sqlalchemy(conn: Any) -> bool:
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

    return isinstance(conn, AsyncConnection | AsyncSession)


def _is_async_psycopg(conn: Any) -> bool:
    import psycopg

    return isinstance(conn, psycopg.AsyncConnection | psycopg.AsyncCursor)


async def _psycopg_async(conn: Any, query: str, document: str) -> str:
    import psycopg

    try:
        cursor = conn if isinstance(conn, psycopg.AsyncCursor) else conn.cursor()
        await cursor.execute(query, [document])
        row: Any = await cursor.fetchone()
    except Exception as exc:
        raise _translated(exc) from exc
    return str(row[0])


def _dbapi(conn: Any, query: str, document: str) -> str:
    """A DB-API cursor (psycopg, psycopg2, Django's), or a connection that opens one."""
    try:
        if hasattr(conn, "fetchone"):
            conn.execute(query, [document])
            row = conn.fetchone()
        else:
            with conn.cursor() as cursor:
                cursor.execute(query, [document])
                row = cursor.fetchone()
    except Exception as exc:
        raise _translated(exc) from exc
    return str(row[0])


_MESSAGE_ID = re.compile(r"\(message ([0-9a-f-]{36})\)")


def _translated(exc: Exception) -> Exception:
    """The odiseo error for one of the function's SQLSTATEs; any other error as it is."""
    code, message = _sqlstate(exc)
    if code == INVALID:
        return InvalidEmail(message)
    if code == TOO_LARGE:
        return TooLarge(message)
    if code == DUPLICATE:
        found = _MESSAGE_ID.search(message)
        return Duplicate(found[1] if found else "", same_payload=False)
    if code == NOT_CONFIGURED:
        return OdiseoError(message)
    return exc


def _sqlstate(exc: BaseException) -> tuple[str | None, str]:
    """The SQLSTATE and primary message of a driver error, looking through the wrappers
    of SQLAlchemy (`.orig`) and Django (`__cause__`)."""
    seen: BaseException | None = exc
    for _ in range(4):
        if seen is None:
            break
        code = getattr(seen, "sqlstate", None) or getattr(seen, "pgcode", None)
        if isinstance(code, str):
            diag = getattr(seen, "diag", None)
            primary = getattr(diag, "message_primary", None) or getattr(seen, "message", None)
            return code, str(primary or str(seen).splitlines()[0])
        seen = getattr(seen, "orig", None) or seen.__cause__
    return None, ""
