"""What only PostgreSQL does: SKIP LOCKED claims, LISTEN/NOTIFY, advisory-locked migrations."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import asyncpg
from sqlalchemy import Row, func, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine
from sqlalchemy.sql import Insert

from odiseo.domain.models import AttemptResult, NewEmail, QueuedEmail
from odiseo.errors import StoreUnavailable
from odiseo.storage import postgres_hot as hot
from odiseo.storage.failures import is_unavailable, translate_errors
from odiseo.storage.migrate import upgrade
from odiseo.storage.rows import attachments_by_email, client_key
from odiseo.storage.store import (
    EmailStore,
    claim_values,
    claimed_messages,
    sleep_until_woken,
)
from odiseo.storage.tables import CLAIMABLE_SQL, CLIENT_KEY, emails, rate_limits

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_SECONDS = 5.0
STATEMENT_TIMEOUT_SECONDS = 30.0
NUDGE_SECONDS = 0.002  # how long a NOTIFY waits to cover more inserts


def asyncpg_url(url: str) -> URL:
    """The SQLAlchemy URL for a plain `postgresql://` (or `postgres://`) URL."""
    parsed = make_url(url.replace("postgres://", "postgresql://", 1))
    return parsed.set(drivername="postgresql+asyncpg")


class PostgresStore(EmailStore):
    """The queue on PostgreSQL, tables in one schema, any number of processes."""

    dialect = "postgresql"

    def __init__(self, url: str, *, schema: str, pool_size: int = 10) -> None:
        self.url = asyncpg_url(url)
        self.schema = schema
        self.channel = f"odiseo_{schema}"[:63]  # as the trigger names it
        engine = create_async_engine(
            self.url,
            pool_size=pool_size,
            max_overflow=pool_size,
            # No pre-ping: a dead connection fails its statement, is invalidated, and the
            # error becomes StoreUnavailable; pinging would cost a round trip per checkout.
            pool_pre_ping=False,
            pool_timeout=CONNECT_TIMEOUT_SECONDS,
            connect_args={
                "timeout": CONNECT_TIMEOUT_SECONDS,
                "command_timeout": STATEMENT_TIMEOUT_SECONDS,
                "server_settings": {"search_path": schema, "application_name": "odiseo"},
            },
        )
        super().__init__(engine)
        self.pool_size = pool_size
        # The hot verbs (enqueue, claim, record) use plain asyncpg: see postgres_hot.py.
        self._pool: asyncpg.Pool | None = None
        self._pool_lock = asyncio.Lock()
        self._listener: Any = None
        self._wake_event = asyncio.Event()
        self._nudging: asyncio.Future[None] | None = None

    def __repr__(self) -> str:
        safe_url = self.url.render_as_string(hide_password=True)
        return f"PostgresStore({safe_url!r}, schema={self.schema!r})"

    async def migrate(self) -> None:
        with translate_errors():
            async with self.engine.begin() as conn:
                # Serialise concurrent starts: the second waits, then finds the schema current.
                await conn.execute(
                    text("SELECT pg_advisory_xact_lock(hashtext(:key))"),
                    {"key": f"odiseo-migrate:{self.schema}"},
                )
                await conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"'))
                await conn.run_sync(upgrade)

    # -- the hot verbs, on plain asyncpg ---------------------------------------------

    def _acquire(self) -> _Pooled:
        """`async with`: a pooled asyncpg connection; driver errors become StoreUnavailable."""
        return _Pooled(self)

    async def _open_pool(self) -> asyncpg.Pool:
        async with self._pool_lock:
            if self._pool is None:
                self._pool = await asyncpg.create_pool(
                    self._dsn(),
                    min_size=0,  # connect on demand: creating the pool never fails
                    max_size=self.pool_size,
                    init=hot.setup_connection,
                    reset=hot.keep_session,
                    timeout=CONNECT_TIMEOUT_SECONDS,
                    command_timeout=STATEMENT_TIMEOUT_SECONDS,
                    server_settings={"search_path": self.schema, "application_name": "odiseo"},
                )
            return self._pool

    def _dsn(self) -> str:
        return self.url.render_as_string(hide_password=False).replace("+asyncpg", "")

    async def _insert(
        self, rows: list[dict[str, Any]], items: Sequence[NewEmail]
    ) -> tuple[set[str], dict[tuple[str, str], tuple[str, str | None]]]:
        async with self._acquire() as conn:
            try:
                inserted, found = await _write(conn, rows, items, copy=True)
            except asyncpg.UniqueViolationError:
                # Another request stored one of these client_message_ids after we looked
                # (nothing of ours was committed): ON CONFLICT waits for it and skips it.
                inserted, found = await _write(conn, rows, items, copy=False)
        if inserted:
            self._nudge()
        return inserted, found

    async def claim_due(
        self, *, limit: int, worker: str, lease_seconds: float, now: datetime
    ) -> list[QueuedEmail]:
        # One statement claims, and logs expired leases; it commits before any SMTP traffic.
        until = now + timedelta(seconds=lease_seconds)
        async with self._acquire() as conn, conn.transaction():
            # One transaction with the attachments: a claim is never committed without them.
            rows = await conn.fetch(hot.CLAIM, now, limit, worker, until)
            carrying = [r["id"] for r in rows if r["attachment_count"]]
            files = await conn.fetch(hot.ATTACHMENTS, carrying) if carrying else []
        return claimed_messages(rows, attachments_by_email(files))

    async def extend_leases(
        self, ids: Sequence[int], *, worker: str, lease_seconds: float, now: datetime
    ) -> int:
        if not ids:
            return 0
        until = now + timedelta(seconds=lease_seconds)
        async with self._acquire() as conn:
            status = await conn.execute(hot.EXTEND, until, list(ids), worker)
        return _count(status)

    async def record_results(
        self, results: Sequence[AttemptResult], *, worker: str, now: datetime
    ) -> int:
        if not results:
            return 0
        async with self._acquire() as conn:
            held: int = await conn.fetchval(
                hot.RECORD, *hot.record_args(results, worker=worker, now=now)
            )
        return held

    async def release(self, ids: Sequence[int], *, worker: str, now: datetime) -> int:
        if not ids:
            return 0
        async with self._acquire() as conn:
            status = await conn.execute(hot.RELEASE, now, list(ids), worker)
        return _count(status)

    # -- SQLAlchemy hooks for the other verbs ------------------------------------------

    def _upsert_counter(self) -> Any:
        return pg_insert(rate_limits)

    def _insert_skipping_duplicates(self) -> Insert:
        return pg_insert(emails).on_conflict_do_nothing(index_elements=CLIENT_KEY)

    def _nudge(self) -> None:
        """Wake the workers about rows this process has just committed.

        One NOTIFY, sent NUDGE_SECONDS later in its own transaction, covers every
        insert committed meanwhile. NOTIFY inside each insert (the trigger of
        migration 0004) made PostgreSQL serialise their commits on a global lock.
        If this process dies before sending it, workers find the rows at their
        next poll (EMAIL_WORKER_POLL_INTERVAL).
        """
        if self._nudging is None or self._nudging.done():
            self._nudging = asyncio.ensure_future(self._send_nudge())

    async def _send_nudge(self) -> None:
        await asyncio.sleep(NUDGE_SECONDS)
        self._nudging = None  # inserts committed from here on schedule the next one
        try:
            async with self._acquire() as conn:
                await conn.execute("SELECT pg_notify($1, '')", self.channel)
        except Exception as exc:  # the next poll finds the rows
            log.debug("cannot notify workers: %s", type(exc).__name__)

    async def _wake(self, conn: AsyncConnection) -> None:
        # Delivered at commit, so a woken worker always finds the rows.
        await conn.execute(select(func.pg_notify(self.channel, "")))

    async def _claim(
        self, conn: AsyncConnection, *, limit: int, worker: str, until: datetime, now: datetime
    ) -> list[Row[Any]]:
        due = (
            select(
                emails.c.id,
                emails.c.status.label("old_status"),
                emails.c.locked_by.label("old_worker"),
            )
            .where(text(CLAIMABLE_SQL), emails.c.next_attempt_at <= now)
            .order_by(emails.c.priority, emails.c.next_attempt_at, emails.c.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
            .cte("due")
        )
        claim = (
            update(emails)
            .where(emails.c.id == due.c.id)
            .values(**claim_values(worker=worker, until=until, now=now))
            .returning(*emails.c, due.c.old_status, due.c.old_worker)
        )
        return list((await conn.execute(claim)).all())

    async def wait_for_work(self, timeout: float) -> None:
        await self._ensure_listening()
        await sleep_until_woken(self._wake_event, timeout)

    async def _ensure_listening(self) -> None:
        if self._listener is not None and not self._listener.is_closed():
            return
        self._listener = None
        try:
            conn = await asyncpg.connect(self._dsn(), timeout=CONNECT_TIMEOUT_SECONDS)
            await conn.add_listener(self.channel, self._notified)
        except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
            log.warning("cannot LISTEN for new mail, polling instead: %s", type(exc).__name__)
            return
        self._listener = conn
        # Anything enqueued while we were not listening is found by the next claim.
        self._wake_event.set()

    def _notified(self, *_: object) -> None:
        self._wake_event.set()

    async def close(self) -> None:
        if self._nudging is not None:  # let the last inserts wake the workers
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._nudging, 2)
        if self._listener is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._listener.close(), 2)
            self._listener = None
        if self._pool is not None:
            pool, self._pool = self._pool, None
            try:
                await asyncio.wait_for(pool.close(), 5)
            except Exception:
                pool.terminate()
        await super().close()


async def _write(
    conn: asyncpg.Connection,
    rows: list[dict[str, Any]],
    items: Sequence[NewEmail],
    *,
    copy: bool,
) -> tuple[set[str], dict[tuple[str, str], tuple[str, str | None]]]:
    """Store `rows` (with the attachments of `items`) in one transaction.

    Returns the message ids inserted, and what is stored under each client_message_id
    that was taken (message id, payload hash). With `copy`, the rows COPY can take
    are looked up by key first and COPYed if new; a key stored meanwhile by another
    request makes the COPY raise UniqueViolationError, having stored nothing.
    """
    found: dict[tuple[str, str], tuple[str, str | None]] = {}
    copied = hot.copyable(rows) if copy else []
    if keys := [client_key(r) for r in copied if r["client_message_id"] is not None]:
        found = await _existing(conn, keys)
        copied = [r for r in copied if r["client_message_id"] is None or client_key(r) not in found]
    done = {id(row) for row in copied}
    rest = [
        r
        for r in rows
        if id(r) not in done and (r["client_message_id"] is None or client_key(r) not in found)
    ]
    carrying = [i.email for i in items if i.email.attachments]
    inserted = {row["message_id"] for row in copied}
    # One statement commits on its own (one round trip); more need a transaction.
    several = (bool(copied) and bool(rest)) or bool(carrying)
    async with conn.transaction() if several else contextlib.nullcontext():
        if copied:
            await conn.copy_records_to_table(
                "emails", records=hot.copy_records(copied), columns=hot.INSERT_NAMES
            )
        if rest:
            statement, args = hot.insert_args(rest)
            stored = await conn.fetch(statement, *args)
            inserted.update(r["message_id"] for r in stored)
            ids = {r["message_id"]: r["id"] for r in stored}
            placed = [(ids[e.message_id], e.attachments) for e in carrying if e.message_id in ids]
            if placed:  # the files commit with their messages
                await conn.execute(hot.INSERT_ATTACHMENTS, *hot.attachment_args(placed))
    if taken := [client_key(r) for r in rest if r["message_id"] not in inserted]:
        found.update(await _existing(conn, taken))
    return inserted, found


async def _existing(
    conn: asyncpg.Connection, keys: Sequence[tuple[str, str]]
) -> dict[tuple[str, str], tuple[str, str | None]]:
    """What is stored under each (scope, client_message_id): message id, payload hash."""
    scopes, client_ids = [k[0] for k in keys], [k[1] for k in keys]
    found = await conn.fetch(hot.EXISTING, scopes, client_ids)
    return {client_key(r): (r["message_id"], r["payload_hash"]) for r in found}


class _Pooled:
    """A pool checkout as a plain class: asynccontextmanager and asyncpg's own acquire
    timeout (a task per call) cost more than the INSERT they wrap."""

    __slots__ = ("_conn", "_pool", "_store")

    def __init__(self, store: PostgresStore) -> None:
        self._store = store

    async def __aenter__(self) -> asyncpg.Connection:
        with translate_errors():
            self._pool = self._store._pool or await self._store._open_pool()
            async with asyncio.timeout(CONNECT_TIMEOUT_SECONDS):
                self._conn: asyncpg.Connection = await self._pool.acquire()
        return self._conn

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, _: Any
    ) -> None:
        with translate_errors():
            await self._pool.release(self._conn)
        if exc is not None and not isinstance(exc, StoreUnavailable) and is_unavailable(exc):
            raise StoreUnavailable(f"database unavailable: {type(exc).__name__}") from exc


def _count(status: str) -> int:
    """The row count of a command tag such as 'UPDATE 3'."""
    return int(status.rpartition(" ")[2] or 0)
