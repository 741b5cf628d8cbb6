"""The queue on PostgreSQL: its hot verbs on asyncpg, one pool per process.

The hot verbs (enqueue, claim, heartbeat, record, release) are single statements
from `sql/postgres.sql`, prepared once per connection; the rarely called ones
(`shared.py`) are SQLAlchemy Core compiled onto the same pool. Workers claim with
`FOR UPDATE SKIP LOCKED` and wake on LISTEN/NOTIFY; migrations are serialised by an
advisory lock, so any number of processes may start at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import operator
from collections.abc import AsyncIterator, Sequence
from datetime import datetime, timedelta
from typing import Any

import asyncpg
from pydantic_core import to_json
from sqlalchemy import JSON, BigInteger, DateTime, Integer, LargeBinary, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool
from sqlalchemy.types import TypeDecorator

from odiseo.domain.events import EventType
from odiseo.domain.lifecycle import AFTER_ATTEMPT, lease_lost, released
from odiseo.domain.models import AttemptResult, NewEmail, Outcome, QueuedEmail, Status
from odiseo.errors import StoreUnavailable
from odiseo.storage import enqueue_function, sql
from odiseo.storage.contract import Enqueued
from odiseo.storage.database import PostgresDatabase, Tx, command_count
from odiseo.storage.failures import is_unavailable, store_error, translate_errors
from odiseo.storage.migrate import pending_contract, upgrade
from odiseo.storage.rows import (
    attachments_by_email,
    claimed_messages,
    client_key,
    enqueued,
    event_rows,
    recipient_event_rows,
    recipients_of,
    suppression_rows,
    to_row,
)
from odiseo.storage.search import domain_pattern
from odiseo.storage.shared import SharedVerbs
from odiseo.storage.tables import CLAIMABLE_SQL, INSERT_COLUMNS, OUTCOME_KINDS_SQL, emails

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_SECONDS = 5.0
STATEMENT_TIMEOUT_SECONDS = 30.0
WAKE_DELAY_SECONDS = 0.002  # how long a NOTIFY waits to cover more inserts
SESSION = {"application_name": "odiseo"}  # and each store's search_path
# Fewer rows than this go through insert_many: one round trip, where COPY takes two.
COPY_AT_LEAST = 8


def _array_type(column: Any) -> str:
    """The PostgreSQL type an unnest() array of this column's values is cast to."""
    kind = column.type.impl if isinstance(column.type, TypeDecorator) else column.type
    if isinstance(kind, DateTime):
        return "timestamptz"
    if isinstance(kind, JSON):
        return "text"  # cast to json per row
    if isinstance(kind, BigInteger):
        return "int8"
    if isinstance(kind, Integer):
        return "int4"
    if isinstance(kind, LargeBinary):
        return "bytea"
    return "text"


_JSON_COLUMNS = frozenset(name for name in INSERT_COLUMNS if isinstance(emails.c[name].type, JSON))
Q = sql.load(
    "postgres.sql",
    insert_columns=", ".join(INSERT_COLUMNS),
    insert_values=", ".join(f"${n}" for n in range(1, len(INSERT_COLUMNS) + 1)),
    insert_casts=", ".join(f"{c}::json" if c in _JSON_COLUMNS else c for c in INSERT_COLUMNS),
    insert_arrays=", ".join(
        f"${n}::{_array_type(emails.c[c])}[]" for n, c in enumerate(INSERT_COLUMNS, start=1)
    ),
    recipients_param=str(len(INSERT_COLUMNS) + 1),
    claimable=CLAIMABLE_SQL,
    outcome_kinds=OUTCOME_KINDS_SQL,
    processing=Status.PROCESSING.value,
    sent=Status.SENT.value,
    suppressed_type=EventType.EMAIL_SUPPRESSED.value,
    lease_lost="'" + lease_lost("' || old_worker || '") + "'",
    released_retry=released(1).value,
    released_new=released(0).value,
)
_record = operator.itemgetter(*INSERT_COLUMNS)


def asyncpg_dsn(url: str) -> str:
    """DATABASE_URL as asyncpg takes it (`postgres://` and `+asyncpg` accepted)."""
    parsed: URL = make_url(url.replace("postgres://", "postgresql://", 1))
    return parsed.set(drivername="postgresql").render_as_string(hide_password=False)


class PostgresStore(SharedVerbs):
    """The queue on PostgreSQL, tables in one schema, any number of processes."""

    dialect = "postgresql"

    def __init__(self, url: str, *, schema: str, pool_size: int = 10) -> None:
        self.dsn = asyncpg_dsn(url)
        self.schema = schema
        self.channel = f"odiseo_{schema}"[:63]  # the NOTIFY channel of this schema's queue
        self.pool_size = pool_size
        self.session = {**SESSION, "search_path": schema}
        self._pool: asyncpg.Pool | None = None
        self._pool_lock = asyncio.Lock()
        self._listener: asyncpg.Connection | None = None
        self._woken = asyncio.Event()
        self._waking: asyncio.Future[None] | None = None
        self._notifier: asyncpg.Connection | None = None  # sends _wake_soon's NOTIFYs
        self._notifying = asyncio.Lock()
        self._wakes: set[asyncio.Task[None]] = set()  # every _wake_soon not yet finished
        self._closed = False
        super().__init__(PostgresDatabase(self.connection), wake=self._wake)

    def __repr__(self) -> str:
        safe = make_url(self.dsn).render_as_string(hide_password=True)
        return f"PostgresStore({safe!r}, schema={self.schema!r})"

    # -- connections ------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[asyncpg.Connection]:
        """A pooled connection; driver errors meaning "the database is gone" become
        StoreUnavailable."""
        with translate_errors():
            pool = self._pool or await self._open_pool()
            async with asyncio.timeout(CONNECT_TIMEOUT_SECONDS):
                conn = await pool.acquire()
        try:
            yield conn
        except Exception as exc:
            if not isinstance(exc, StoreUnavailable) and is_unavailable(exc):
                raise store_error(exc) from exc
            raise
        finally:
            with translate_errors():
                await pool.release(conn)

    async def _open_pool(self) -> asyncpg.Pool:
        async with self._pool_lock:
            if self._pool is None:
                self._pool = await asyncpg.create_pool(
                    self.dsn,
                    min_size=0,  # connect on demand: creating the pool never fails
                    max_size=self.pool_size,
                    init=_setup_connection,
                    reset=_keep_session,
                    timeout=CONNECT_TIMEOUT_SECONDS,
                    command_timeout=STATEMENT_TIMEOUT_SECONDS,
                    server_settings=self.session,
                )
            return self._pool

    async def migrate(self, *, contract: bool = False) -> list[str]:
        # Alembic needs SQLAlchemy: one connection, for as long as the migration runs.
        engine = create_async_engine(
            self.dsn.replace("postgresql://", "postgresql+asyncpg://", 1),
            poolclass=NullPool,
            connect_args={
                "timeout": CONNECT_TIMEOUT_SECONDS,
                "server_settings": {"search_path": self.schema, "application_name": "odiseo"},
            },
        )
        try:
            with translate_errors():
                async with engine.begin() as conn:
                    # Concurrent starts: the second waits, then finds the schema current.
                    key = f"odiseo-migrate:{self.schema}"
                    await conn.execute(
                        text("SELECT pg_advisory_xact_lock(hashtext(:k))"), {"k": key}
                    )
                    await conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"'))
                    await conn.run_sync(upgrade, contract=contract)
                    # Every run, after the revisions: the function writes the row this
                    # code's store writes (storage/enqueue_function.py).
                    await conn.run_sync(
                        enqueue_function.install, schema=self.schema, channel=self.channel
                    )
                    return await conn.run_sync(pending_contract)
        finally:
            await engine.dispose()

    async def close(self) -> None:
        if self._wakes:  # let the last inserts wake the workers
            await asyncio.wait(self._wakes, timeout=2)
        self._closed = True  # a wake still running opens no connection now
        conns = [c for c in (self._listener, self._notifier) if c is not None]
        self._listener = self._notifier = None
        pool, self._pool = self._pool, None
        try:
            for conn in conns:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(conn.close(), 2)
            if pool is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(pool.close(), 5)
        finally:
            # what did not close in time (or when close() itself was cancelled) is
            # dropped here: a socket left to the garbage collector warns in a later test
            for conn in conns:
                if not conn.is_closed():
                    conn.terminate()
            if pool is not None:
                pool.terminate()  # nothing to do when it closed

    # -- waking workers ---------------------------------------------------------------

    async def _wake(self, tx: Tx) -> None:
        # Inside the transaction: NOTIFY is delivered at commit, so a woken worker
        # always finds the rows.
        await tx.scalar(text("SELECT pg_notify(:channel, '')").bindparams(channel=self.channel))

    def _wake_after_commit(self) -> None:
        """Wake the workers about rows this process has just committed.

        A worker in this process (`odiseo run`) is woken at once, as on SQLite: the
        rows are committed, and waiting for our own NOTIFY to come back would only add
        its delay and a round trip to each wake-up. For the other processes, one
        NOTIFY, sent WAKE_DELAY_SECONDS later in its own transaction, covers every
        insert committed meanwhile (a NOTIFY inside each insert made PostgreSQL
        serialise their commits on a global lock). If this process dies before
        sending it, workers find the rows at their next poll.

        It goes over a connection of its own, never one of the pool's: while other
        sessions' notifying transactions commit (the SQL function enqueue() notifies
        in its caller's transaction), this NOTIFY waits for that lock, and the
        inserts must not wait for a pooled connection meanwhile (bench/README.md,
        transactional enqueue).
        """
        self._woken.set()
        if self._waking is None or self._waking.done():
            task = asyncio.ensure_future(self._wake_soon())
            self._waking = task
            self._wakes.add(task)
            task.add_done_callback(self._wakes.discard)

    async def _wake_soon(self) -> None:
        await asyncio.sleep(WAKE_DELAY_SECONDS)
        self._waking = None  # inserts committed from here on schedule the next one
        async with self._notifying:  # one NOTIFY at a time on the one connection
            if self._closed:
                return
            try:
                if self._notifier is None or self._notifier.is_closed():
                    self._notifier = await asyncpg.connect(
                        self.dsn,
                        timeout=CONNECT_TIMEOUT_SECONDS,
                        command_timeout=STATEMENT_TIMEOUT_SECONDS,
                        server_settings=self.session,
                    )
                    if self._closed:  # close() gave up waiting for this connection
                        self._notifier.terminate()
                        self._notifier = None
                        return
                await self._notifier.execute(Q["notify"], self.channel)
            except Exception as exc:  # the next poll finds the rows
                log.debug("cannot notify workers: %s", type(exc).__name__)
                notifier, self._notifier = self._notifier, None
                if notifier is not None:
                    notifier.terminate()

    async def wait_for_work(self, timeout: float) -> None:
        await self._ensure_listening()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._woken.wait(), timeout)
        self._woken.clear()

    async def _ensure_listening(self) -> None:
        if self._listener is not None and not self._listener.is_closed():
            return
        self._listener = None
        if self._closed:  # a worker still waiting after close(): it polls
            return
        conn: asyncpg.Connection | None = None
        try:
            conn = await asyncpg.connect(self.dsn, timeout=CONNECT_TIMEOUT_SECONDS)
            await conn.add_listener(self.channel, self._notified)
        except BaseException as exc:
            # LISTEN refused or cancelled: the connection is ours to drop, not the GC's
            if conn is not None:
                conn.terminate()
            if not isinstance(exc, (OSError, TimeoutError, asyncpg.PostgresError)):
                raise
            log.warning("cannot LISTEN for new mail, polling instead: %s", type(exc).__name__)
            return
        if self._closed or self._listener is not None:  # close() or another waiter came first
            conn.terminate()
            return
        self._listener = conn
        self._woken.set()  # anything enqueued while we were not listening is found now

    def _notified(self, *_: object) -> None:
        self._woken.set()

    # -- the hot verbs ----------------------------------------------------------------

    async def enqueue(self, items: Sequence[NewEmail], *, now: datetime) -> list[Enqueued]:
        rows = [to_row(item, now=now) for item in items]
        async with self.connection() as conn:
            try:
                inserted, found, barred = await _store_rows(conn, rows, items, copy=True)
            except asyncpg.UniqueViolationError:
                # Another request stored one of these keys after we looked (nothing of
                # ours was committed): ON CONFLICT waits for it and skips it.
                inserted, found, barred = await _store_rows(conn, rows, items, copy=False)
            if barred is None:
                new = [r for r in rows if r["message_id"] in inserted]
                barred = await _suppressed(conn, recipients_of(new))
        if inserted:
            self._wake_after_commit()
        return enqueued(rows, inserted, found, barred)

    async def claim_due(
        self,
        *,
        limit: int,
        worker: str,
        lease_seconds: float,
        now: datetime,
        skip_domains: Sequence[str] = (),
    ) -> list[QueuedEmail]:
        # One statement claims and logs expired leases, committed on its own (one round
        # trip, no BEGIN and COMMIT of their own) before any SMTP traffic, so no row lock
        # is held across the network. The files and the suppression list are read after
        # it: a claimed message's files change only when this worker records its result.
        until = now + timedelta(seconds=lease_seconds)
        async with self.connection() as conn:
            held = [domain_pattern(d) for d in skip_domains]
            rows = await conn.fetch(Q["claim"], now, limit, worker, until, held)
            carrying = [r["id"] for r in rows if r["attachment_count"]]
            files = await conn.fetch(Q["attachments"], carrying) if carrying else []
            barred = await _suppressed(conn, recipients_of(rows)) if rows else set()
        return claimed_messages(rows, attachments_by_email(files), barred)

    async def heartbeat(
        self, ids: Sequence[int], *, worker: str, lease_seconds: float, now: datetime
    ) -> int:
        if not ids:
            return 0
        until = now + timedelta(seconds=lease_seconds)
        async with self.connection() as conn:
            return command_count(await conn.execute(Q["heartbeat"], until, worker, list(ids)))

    async def record_results(
        self,
        results: Sequence[AttemptResult],
        *,
        worker: str,
        now: datetime,
        redact: bool = False,
    ) -> int:
        if not results:
            return 0
        async with self.connection() as conn:
            arguments = _record_args(results, worker, now)
            held: int = await conn.fetchval(Q["record"], *arguments, redact)
        return held

    async def release(self, ids: Sequence[int], *, worker: str, now: datetime) -> int:
        if not ids:
            return 0
        async with self.connection() as conn:
            return command_count(await conn.execute(Q["release"], now, list(ids), worker, False))

    async def release_strays(self, holding: Sequence[int], *, worker: str, now: datetime) -> int:
        async with self.connection() as conn:
            return command_count(await conn.execute(Q["release"], now, list(holding), worker, True))


async def _store_rows(
    conn: asyncpg.Connection, rows: list[dict[str, Any]], items: Sequence[NewEmail], *, copy: bool
) -> tuple[set[str], dict[tuple[str, str], tuple[str, str | None]], set[str] | None]:
    """Store `rows` (with the attachments of `items`) in one transaction.

    Returns the message ids inserted, what is stored under each taken key, and, when
    one INSERT stored a single row, which of its recipients are suppressed (else None:
    the caller asks). With
    `copy`, the rows COPY can take are looked up by key first and COPYed if new; a key
    stored meanwhile by another request makes the COPY raise UniqueViolationError,
    having stored nothing.
    """
    found: dict[tuple[str, str], tuple[str, str | None]] = {}
    copied = _copyable(rows) if copy else []
    if keys := [client_key(r) for r in copied if r["client_message_id"] is not None]:
        found = await _existing(conn, keys)
        copied = [r for r in copied if r["client_message_id"] is None or client_key(r) not in found]
    done = {id(row) for row in copied}
    rest = [r for r in rows if id(r) not in done and not _found(r, found)]
    carrying = [i.email for i in items if i.email.attachments]
    inserted = {row["message_id"] for row in copied}
    barred: set[str] | None = None
    several = (bool(copied) and bool(rest)) or bool(carrying)  # else one statement commits
    async with conn.transaction() if several else contextlib.nullcontext():
        if copied:
            await conn.copy_records_to_table(
                "emails", records=[_record(r) for r in copied], columns=INSERT_COLUMNS
            )
        if rest:
            stored = await _insert(conn, rest)
            if len(rest) == 1 and not copied:
                barred = set(stored[0]["suppressed"]) if stored else set()
            inserted.update(r["message_id"] for r in stored)
            ids = {r["message_id"]: r["id"] for r in stored}
            placed = [(ids[e.message_id], e.attachments) for e in carrying if e.message_id in ids]
            if placed:  # the files commit with their messages
                await conn.execute(Q["insert_attachments"], *_attachment_args(placed))
    if taken := [client_key(r) for r in rest if r["message_id"] not in inserted]:
        found.update(await _existing(conn, taken))
    return inserted, found, barred


async def _suppressed(conn: asyncpg.Connection, addresses: list[str]) -> set[str]:
    """Which of these normalised addresses are on the suppression list."""
    return {r["address"] for r in await conn.fetch(Q["suppressed"], addresses)}


def _found(row: dict[str, Any], found: dict[tuple[str, str], Any]) -> bool:
    return row["client_message_id"] is not None and client_key(row) in found


async def _insert(conn: asyncpg.Connection, rows: list[dict[str, Any]]) -> list[Any]:
    """INSERT one row with VALUES, or many with one array per column."""
    if len(rows) == 1:
        recipients = recipients_of(rows)
        return list(await conn.fetch(Q["insert_one"], *_record(rows[0]), recipients))
    arrays = [
        [json_text(row[name]) for row in rows]
        if name in _JSON_COLUMNS
        else [row[name] for row in rows]
        for name in INSERT_COLUMNS
    ]
    return list(await conn.fetch(Q["insert_many"], *arrays))


async def _existing(
    conn: asyncpg.Connection, keys: Sequence[tuple[str, str]]
) -> dict[tuple[str, str], tuple[str, str | None]]:
    """What is stored under each (scope, client_message_id): message id, payload hash."""
    found = await conn.fetch(Q["existing"], [k[0] for k in keys], [k[1] for k in keys])
    return {client_key(r): (r["message_id"], r["payload_hash"]) for r in found}


def _copyable(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows of a bulk enqueue that COPY may take, or [] if too few.

    COPY has no ON CONFLICT and returns no ids, so it takes no row with attachments
    (they need the new row's id) and no row repeating the key of an earlier row of the
    batch (the earlier one is stored, this one is a duplicate).
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


def _attachment_args(placed: Sequence[tuple[int, Sequence[Any]]]) -> list[list[Any]]:
    """Column arrays for insert_attachments from (email id, its files) pairs."""
    columns: list[list[Any]] = [[], [], [], [], [], []]
    for email_id, files in placed:
        for position, item in enumerate(files):
            values = (email_id, position, item.filename, item.content_type, item.content_id)
            for column, value in zip(columns, (*values, item.data), strict=True):
                column.append(value)
    return columns


def _record_args(results: Sequence[AttemptResult], worker: str, now: datetime) -> list[Any]:
    """The arguments of the record query, column by column."""
    events = event_rows(results, worker=worker)
    for event in events:
        event["data"] = None if event["data"] is None else json_text(event["data"])
    about = recipient_event_rows(results, worker=worker)
    barred = suppression_rows(results)
    return [
        [r.email_id for r in results],
        [r.attempt for r in results],
        [AFTER_ATTEMPT[r.outcome].value for r in results],
        [r.next_attempt_at for r in results],
        [r.finished_at if r.outcome is Outcome.SENT else None for r in results],
        [None if r.outcome is Outcome.SENT else r.response for r in results],
        now,
        worker,
        *([event[name] for event in events] for name in _EVENT_COLUMNS),
        *([row[name] for row in about] for name in _ABOUT_COLUMNS),
        *([row[name] for row in barred] for name in _BARRED_COLUMNS),
        [r.relay_message_id if r.outcome is Outcome.SENT else None for r in results],
    ]


_EVENT_COLUMNS = (
    "email_id",
    "at",
    "kind",
    "attempt",
    "smtp_code",
    "response",
    "duration_ms",
    "worker",
    "type",
    "data",
)
_ABOUT_COLUMNS = ("email_id", "attempt", "at", "kind", "type", "recipient", "smtp_code", "response")
_BARRED_COLUMNS = ("email_id", "attempt", "address", "reason", "message_id", "detail")


def json_text(value: Any) -> str:
    """JSON for a json column, as json.dumps writes it (non-ASCII as \\u escapes, which
    search relies on), by pydantic-core's faster encoder when that is the same."""
    encoded = to_json(value).decode()
    # json.dumps also escapes DEL, the one ASCII character pydantic-core leaves raw.
    return encoded if encoded.isascii() and "\x7f" not in encoded else json.dumps(value)


def _json_bytes(value: Any) -> bytes:
    return json_text(value).encode()


_EMPTY = {b"[]": list, b"{}": dict}


def _json_value(data: bytes) -> Any:
    """A json column's value, as json.loads gives it; the empty list and object most
    rows hold (cc, bcc, reply-to, headers) without parsing them."""
    empty = _EMPTY.get(data)
    return empty() if empty is not None else json.loads(data)


async def _setup_connection(conn: asyncpg.Connection) -> None:
    """JSON columns in and out as Python values, like SQLAlchemy's JSON type.

    Binary format, which for json is its UTF-8 text: COPY accepts binary codecs only.
    """
    await conn.set_type_codec(
        "json", encoder=_json_bytes, decoder=_json_value, schema="pg_catalog", format="binary"
    )


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Skip asyncpg's reset query on release: a round trip per use, for nothing here.

    No verb leaves session state (no SET, LISTEN, advisory lock or cursor; the
    migration's advisory lock is transaction-scoped, on its own connection);
    asyncpg still rolls back a transaction a cancelled caller left open.
    """
