"""The queue's hot verbs on PostgreSQL, written as plain SQL for asyncpg.

Enqueue, claim, record, extend and release run thousands of times a second, so
each is one prepared statement (asyncpg caches them per connection) and one
round trip: a claim updates its rows and logs expired leases in one statement,
a batch of results updates every row and appends every event in one. Going
through SQLAlchemy here cost more CPU than the database work itself. The SQL
follows `tables.py`, and the store test suite runs every verb on both engines.
"""

from __future__ import annotations

import json
import operator
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import asyncpg
from pydantic_core import to_json

from odiseo.domain.models import Attachment, AttemptResult, Outcome, Status
from odiseo.storage.rows import client_key
from odiseo.storage.tables import CLAIMABLE_SQL

# The columns enqueue writes, in `rows.to_row` order, with their array types for unnest.
_INSERT_COLUMNS: tuple[tuple[str, str], ...] = (
    ("message_id", "text"),
    ("rfc_message_id", "text"),
    ("client_message_id", "text"),
    ("idempotency_scope", "text"),
    ("payload_hash", "text"),
    ("status", "text"),
    ("priority", "int4"),
    ("attempts", "int4"),
    ("max_retries", "int4"),
    ("next_attempt_at", "timestamptz"),
    ("from_email", "text"),
    ("from_name", "text"),
    ("to_addrs", "json"),
    ("cc_addrs", "json"),
    ("bcc_addrs", "json"),
    ("reply_to", "json"),
    ("headers", "json"),
    ("subject", "text"),
    ("html", "text"),
    ("text", "text"),
    ("template_id", "text"),
    ("template_version", "int4"),
    ("expires_at", "timestamptz"),
    ("attachment_count", "int4"),
    ("tags", "json"),
    ("meta", "json"),
    ("created_at", "timestamptz"),
    ("updated_at", "timestamptz"),
)
INSERT_NAMES = tuple(name for name, _ in _INSERT_COLUMNS)
_COLUMN_LIST = ", ".join(INSERT_NAMES)
_SKIP_TAKEN_KEYS = (
    "ON CONFLICT (idempotency_scope, client_message_id) DO NOTHING RETURNING id, message_id"
)

INSERT_ONE = (
    f"INSERT INTO emails ({_COLUMN_LIST}) "
    f"VALUES ({', '.join(f'${n}' for n in range(1, len(_INSERT_COLUMNS) + 1))}) "
    f"{_SKIP_TAKEN_KEYS}"
)
# JSON travels as text[] and is cast per row: asyncpg cannot build json[] literals.
INSERT_MANY = (
    f"INSERT INTO emails ({_COLUMN_LIST}) SELECT "
    + ", ".join(f"{name}::json" if kind == "json" else name for name, kind in _INSERT_COLUMNS)
    + " FROM unnest("
    + ", ".join(
        f"${n}::{'text' if kind == 'json' else kind}[]"
        for n, (_, kind) in enumerate(_INSERT_COLUMNS, start=1)
    )
    + f") AS new({_COLUMN_LIST}) {_SKIP_TAKEN_KEYS}"
)
_JSON_NAMES = frozenset(name for name, kind in _INSERT_COLUMNS if kind == "json")
EXISTING = (
    "SELECT idempotency_scope, client_message_id, message_id, payload_hash FROM emails "
    "WHERE (idempotency_scope, client_message_id) IN "
    "(SELECT * FROM unnest($1::text[], $2::text[]))"
)
INSERT_ATTACHMENTS = (
    "INSERT INTO email_attachments (email_id, position, filename, content_type, content_id, data) "
    "SELECT * FROM unnest($1::int8[], $2::int4[], $3::text[], $4::text[], $5::text[], $6::bytea[])"
)
ATTACHMENTS = (
    "SELECT email_id, filename, content_type, content_id, data FROM email_attachments "
    "WHERE email_id = ANY($1::int8[]) ORDER BY email_id, position"
)

# $1 now, $2 limit, $3 worker, $4 lease end. Expired leases enter the history in the
# same statement, so a claim and its lease_expired events commit together.
CLAIM = f"""
WITH due AS (
    SELECT id, status AS old_status, locked_by AS old_worker FROM emails
    WHERE {CLAIMABLE_SQL} AND next_attempt_at <= $1
    ORDER BY priority, next_attempt_at, id
    LIMIT $2
    FOR UPDATE SKIP LOCKED
), claimed AS (
    UPDATE emails AS e SET status = 'processing', attempts = e.attempts + 1, locked_by = $3,
        locked_until = $4, next_attempt_at = $4, updated_at = $1
    FROM due WHERE e.id = due.id
    RETURNING e.*, due.old_status, due.old_worker
), expired AS (
    INSERT INTO email_events (email_id, at, kind, attempt, response, worker)
    SELECT id, $1, 'lease_expired', attempts - 1, 'worker ' || old_worker || ' lost its lease', $3
    FROM claimed WHERE old_status = 'processing'
)
SELECT * FROM claimed
"""

# One statement for a whole batch of finished attempts: rows this worker still holds
# take their new state; every attempt enters the history, held or not. Rows are locked
# in id order, as EXTEND and RELEASE lock them, so two of these never deadlock.
RECORD = """
WITH result AS (
    SELECT * FROM unnest($1::int8[], $2::int4[], $3::text[], $4::timestamptz[],
                         $5::timestamptz[], $6::text[])
        AS r(id, attempt, status, next_at, sent_at, error)
), locked AS (
    SELECT e.id FROM emails AS e JOIN result ON e.id = result.id AND e.attempts = result.attempt
    WHERE e.status = 'processing' AND e.locked_by = $8
    ORDER BY e.id
    FOR NO KEY UPDATE OF e
), updated AS (
    UPDATE emails AS e SET status = result.status, next_attempt_at = result.next_at,
        sent_at = result.sent_at, last_error = result.error,
        locked_until = NULL, locked_by = NULL, updated_at = $7
    FROM result
    WHERE e.id = result.id AND e.id IN (SELECT id FROM locked) AND e.attempts = result.attempt
        AND e.status = 'processing' AND e.locked_by = $8
    RETURNING e.id
), logged AS (
    INSERT INTO email_events (email_id, at, kind, attempt, smtp_code, response, duration_ms, worker)
    SELECT email_id, at, kind, attempt, smtp_code, response, duration_ms, $8
    FROM unnest($1::int8[], $9::timestamptz[], $10::text[], $2::int4[], $11::int4[],
                $12::text[], $13::int4[])
        AS ev(email_id, at, kind, attempt, smtp_code, response, duration_ms)
)
SELECT count(*) FROM updated
"""

# The rows of `ids` this worker still holds, locked in id order (see RECORD).
_HELD_IN_ORDER = (
    "SELECT id FROM emails WHERE id = ANY($2::int8[]) AND status = 'processing' "
    "AND locked_by = $3 ORDER BY id FOR NO KEY UPDATE"
)
EXTEND = (
    "UPDATE emails SET locked_until = $1, next_attempt_at = $1 "
    f"WHERE id IN ({_HELD_IN_ORDER}) AND status = 'processing' AND locked_by = $3"
)
RELEASE = (
    "UPDATE emails SET status = CASE WHEN attempts > 1 THEN 'scheduled' ELSE 'pending' END, "
    "attempts = attempts - 1, next_attempt_at = $1, locked_until = NULL, locked_by = NULL, "
    f"updated_at = $1 WHERE id IN ({_HELD_IN_ORDER}) AND status = 'processing' "
    "AND locked_by = $3"
)

_FINISHED_STATUS = {
    Outcome.SENT: Status.SENT,
    Outcome.RETRY: Status.SCHEDULED,
    Outcome.FAILED: Status.FAILED,
}


def json_text(value: Any) -> str:
    """JSON for a json column, as json.dumps writes it (non-ASCII as \\u escapes, which
    search relies on); by pydantic-core's encoder, 7 times faster, when that is the same."""
    encoded = to_json(value).decode()
    # json.dumps also escapes DEL, the one ASCII character pydantic-core leaves raw.
    return encoded if encoded.isascii() and "\x7f" not in encoded else json.dumps(value)


def _json_bytes(value: Any) -> bytes:
    return json_text(value).encode()


async def setup_connection(conn: asyncpg.Connection) -> None:
    """JSON columns in and out as Python values, like SQLAlchemy's JSON type.

    Binary format, which for json is its UTF-8 text: COPY accepts binary codecs only.
    """
    await conn.set_type_codec(
        "json", encoder=_json_bytes, decoder=json.loads, schema="pg_catalog", format="binary"
    )


async def keep_session(conn: asyncpg.Connection) -> None:
    """Skip asyncpg's reset query on release: a round trip per use, for nothing here.

    The hot verbs leave no session state (no SET, LISTEN, advisory lock or cursor);
    asyncpg still rolls back a transaction a cancelled caller left open.
    """


# Fewer rows than this go through INSERT_MANY: one round trip, where COPY takes two.
COPY_AT_LEAST = 8
_record = operator.itemgetter(*INSERT_NAMES)


def copyable(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows of a bulk enqueue that COPY may take, or [] if too few.

    COPY has no ON CONFLICT and returns no ids, so it takes no row with attachments
    (they need the new row's id) and no row repeating a client_message_id of an
    earlier row of the batch (the earlier one is stored, this one is a duplicate).
    Rows with a key still need looking up first (`postgres._write`). COPY costs
    PostgreSQL and the driver far less than INSERT … SELECT FROM unnest: 40,800
    rows/s against 17,900 in bench/batch.py.
    """
    seen: set[tuple[str, str]] = set()
    plain = []
    for row in rows:
        if row["client_message_id"] is not None:
            key = client_key(row)
            if key in seen:
                continue
            seen.add(key)
        if not row["attachment_count"]:
            plain.append(row)
    return plain if len(plain) >= COPY_AT_LEAST else []


def copy_records(rows: Sequence[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """`rows` as tuples in INSERT_NAMES order, for copy_records_to_table."""
    return [_record(row) for row in rows]


def insert_args(rows: Sequence[dict[str, Any]]) -> tuple[str, list[Any]]:
    """The INSERT for `rows` and its arguments: one VALUES row, or one array per column."""
    if len(rows) == 1:
        return INSERT_ONE, [rows[0][name] for name in INSERT_NAMES]
    return INSERT_MANY, [
        [json_text(row[name]) for row in rows]
        if name in _JSON_NAMES
        else [row[name] for row in rows]
        for name in INSERT_NAMES
    ]


def attachment_args(placed: Sequence[tuple[int, Sequence[Attachment]]]) -> list[list[Any]]:
    """Column arrays for INSERT_ATTACHMENTS from (email id, its files) pairs."""
    columns: list[list[Any]] = [[], [], [], [], [], []]
    for email_id, files in placed:
        for position, item in enumerate(files):
            values = (email_id, position, item.filename, item.content_type, item.content_id)
            for column, value in zip(columns, (*values, item.data), strict=True):
                column.append(value)
    return columns


def record_args(results: Sequence[AttemptResult], *, worker: str, now: datetime) -> list[Any]:
    """The arguments of RECORD, column by column."""
    return [
        [r.email_id for r in results],
        [r.attempt for r in results],
        [_FINISHED_STATUS[r.outcome].value for r in results],
        [r.next_attempt_at for r in results],
        [r.finished_at if r.outcome is Outcome.SENT else None for r in results],
        [None if r.outcome is Outcome.SENT else r.response for r in results],
        now,
        worker,
        [r.finished_at for r in results],
        [r.outcome.value for r in results],
        [r.smtp_code for r in results],
        [r.response for r in results],
        [round((r.finished_at - r.started_at).total_seconds() * 1000) for r in results],
    ]
