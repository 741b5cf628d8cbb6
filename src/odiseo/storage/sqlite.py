"""The queue in one SQLite file (the embedded default): its hot verbs, in SQLAlchemy Core.

WAL, a busy timeout, and BEGIN IMMEDIATE for every write: a claim holds the write
lock from its first read, so two processes sharing the file never claim one row.
SQLite is one host: the API and workers must share its file system, and
`odiseo run` (one process) is the usual way to run it.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Text,
    bindparam,
    case,
    cast,
    delete,
    event,
    func,
    not_,
    or_,
    select,
    text,
    tuple_,
    update,
)
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine
from sqlalchemy.pool import NullPool

from odiseo.domain.events import EventType
from odiseo.domain.lifecycle import AFTER_ATTEMPT, lease_lost, released
from odiseo.domain.models import AttemptResult, NewEmail, Outcome, QueuedEmail, Status
from odiseo.storage.contract import Enqueued
from odiseo.storage.database import SqliteDatabase, Tx
from odiseo.storage.failures import translate_errors
from odiseo.storage.migrate import pending_contract, up_to_date, upgrade
from odiseo.storage.rows import (
    attachment_rows,
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
from odiseo.storage.shared import SharedVerbs, attachments
from odiseo.storage.tables import (
    CLAIMABLE_SQL,
    OUTCOME_KINDS_SQL,
    email_attachments,
    email_events,
    emails,
    suppressions,
)

BUSY_TIMEOUT_MS = 30_000
WATCH_SECONDS = 0.25  # how often a waiting worker looks for commits of other processes
# Any unique index: before c001 (contract), 1.0's on client_message_id alone as well.
_KEYED = sqlite_insert(emails).on_conflict_do_nothing()
_SUPPRESS = sqlite_insert(suppressions).on_conflict_do_nothing()


class SqliteStore(SharedVerbs):
    """The queue in one SQLite file."""

    dialect = "sqlite"

    def __init__(self, path: Path) -> None:
        self.path = path
        with translate_errors():
            path.parent.mkdir(parents=True, exist_ok=True)
        self.engine = create_async_engine(
            f"sqlite+aiosqlite:///{path}", connect_args={"timeout": BUSY_TIMEOUT_MS / 1000}
        )
        event.listen(self.engine.sync_engine, "connect", _configure_connection)
        event.listen(self.engine.sync_engine, "begin", _begin)
        self._writer = self.engine.execution_options(odiseo_write=True)
        self._woken = asyncio.Event()  # set by this process's writes: wakes its worker
        self._watch: sqlite3.Connection | None = None  # reads data_version in wait_for_work
        self._data_version: int | None = None
        super().__init__(SqliteDatabase(self.engine, self._writer), wake=self._wake)

    def __repr__(self) -> str:
        return f"SqliteStore({str(self.path)!r})"

    async def migrate(self, *, contract: bool = False) -> list[str]:
        # A connection of its own with foreign keys off (they cannot change inside a
        # transaction): a revision that rebuilds a table drops the old one, and with them
        # on, that drop would first delete every row referring to it (events, files).
        engine = create_async_engine(
            f"sqlite+aiosqlite:///{self.path}",
            poolclass=NullPool,
            connect_args={"timeout": BUSY_TIMEOUT_MS / 1000},
        )
        event.listen(engine.sync_engine, "connect", _configure_migration)
        event.listen(engine.sync_engine, "begin", _begin)
        try:
            with translate_errors():  # IMMEDIATE: one process migrates
                async with engine.execution_options(odiseo_write=True).begin() as conn:
                    if not await conn.run_sync(up_to_date, contract=contract):
                        # Only what the revisions left: rows an operator's shell left
                        # dangling before are not theirs (and a current schema is not
                        # scanned at every start).
                        before = set(await _dangling(conn))
                        await conn.run_sync(upgrade, contract=contract)
                        if left := [row for row in await _dangling(conn) if row not in before]:
                            raise RuntimeError(f"migration left dangling references: {left}")
                    return await conn.run_sync(pending_contract)
        finally:
            await engine.dispose()

    async def close(self) -> None:
        if self._watch is not None:
            self._watch.close()
            self._watch = None
        await self.engine.dispose()

    async def _wake(self, tx: Tx) -> None:
        self._woken.set()  # this process's worker; others see it in data_version

    async def wait_for_work(self, timeout: float) -> None:
        """Until this process queues mail, another process commits, or `timeout` passes.

        Another process (`odiseo send` beside `odiseo run`) cannot wake us as NOTIFY
        does on PostgreSQL; but its commit changes `PRAGMA data_version` as seen by a
        connection that did not make it. One kept connection reads it every
        WATCH_SECONDS: a read of a counter in shared memory, no query on the tables.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while (left := deadline - loop.time()) > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._woken.wait(), min(left, WATCH_SECONDS))
            if self._woken.is_set() or self._changed_elsewhere():
                break
        self._woken.clear()

    def _changed_elsewhere(self) -> bool:
        """Whether a commit happened since the last look; the first look says yes, so the
        caller claims once more after the baseline is taken and misses nothing."""
        try:
            if self._watch is None:
                self._watch = sqlite3.connect(self.path, timeout=0, check_same_thread=False)
            version = self._watch.execute("PRAGMA data_version").fetchone()[0]
        except sqlite3.Error:
            return False  # busy or gone: the poll interval still applies
        changed = version != self._data_version
        self._data_version = version
        return bool(changed)

    # -- the hot verbs ----------------------------------------------------------------

    async def enqueue(self, items: Sequence[NewEmail], *, now: datetime) -> list[Enqueued]:
        rows = [to_row(item, now=now) for item in items]
        keyed = [r for r in rows if r["client_message_id"] is not None]
        plain = [r for r in rows if r["client_message_id"] is None]
        async with self.db.write() as tx:
            if plain:
                await tx.run(emails.insert(), plain)
            inserted = {r["message_id"] for r in plain}
            for row in keyed:  # one at a time: RETURNING says which were new
                stored = await tx.rows(_KEYED.values(row).returning(emails.c.message_id))
                inserted.update(r["message_id"] for r in stored)
            taken = [client_key(r) for r in keyed if r["message_id"] not in inserted]
            existing = await _existing(tx, taken)
            await _store_attachments(tx, items, inserted)
            barred = await _suppressed(tx, [r for r in rows if r["message_id"] in inserted])
            if inserted:
                await self._wake(tx)
        return enqueued(rows, inserted, existing, barred)

    async def claim_due(
        self,
        *,
        limit: int,
        worker: str,
        lease_seconds: float,
        now: datetime,
        skip_domains: Sequence[str] = (),
    ) -> list[QueuedEmail]:
        # Committed before any SMTP traffic: no lock is held across the network.
        until = now + timedelta(seconds=lease_seconds)
        async with self.db.write() as tx:  # BEGIN IMMEDIATE: nobody claims in between
            due = await tx.rows(
                select(emails.c.id, emails.c.status, emails.c.locked_by)
                .where(
                    text(CLAIMABLE_SQL),
                    emails.c.next_attempt_at <= now,
                    *_not_to(skip_domains),
                )
                .order_by(emails.c.priority, emails.c.next_attempt_at, emails.c.id)
                .limit(limit)
            )
            if not due:
                return []
            claimed = await tx.rows(
                update(emails)
                .where(emails.c.id.in_([r["id"] for r in due]))
                .values(
                    status=Status.PROCESSING,
                    attempts=emails.c.attempts + 1,
                    locked_by=worker,
                    locked_until=until,
                    next_attempt_at=until,  # an expired lease is simply due again
                    updated_at=now,
                )
                .returning(*emails.c)
            )
            await _log_lost_leases(tx, due, claimed, worker=worker, now=now)
            files = await attachments(tx, [r["id"] for r in claimed if r["attachment_count"]])
            barred = await _suppressed(tx, claimed)
        return claimed_messages(claimed, files, barred)

    async def heartbeat(
        self, ids: Sequence[int], *, worker: str, lease_seconds: float, now: datetime
    ) -> int:
        if not ids:
            return 0
        until = now + timedelta(seconds=lease_seconds)
        async with self.db.write() as tx:
            return await tx.run(
                update(emails)
                .where(*_leased_to(worker), emails.c.id.in_(list(ids)))
                .values(locked_until=until, next_attempt_at=until)
            )

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
        async with self.db.write() as tx:
            held = await tx.rows(
                select(emails.c.id, emails.c.attempts).where(*_held_by(results, worker))
            )
            owned = {(r["id"], r["attempts"]) for r in held}
            mine = [r for r in results if (r.email_id, r.attempt) in owned]
            if mine:
                await tx.run(_RECORD, [_record_values(r, now=now) for r in mine])
            sent = [r.email_id for r in mine if r.outcome is Outcome.SENT]
            if redact and sent:  # REDACT_AFTER_SEND: the history stays, the content goes
                await tx.run(
                    update(emails)
                    .where(emails.c.id.in_(sent))
                    .values(html=None, text=None, raw_message=None, redacted_at=now)
                )
                await tx.run(
                    delete(email_attachments).where(email_attachments.c.email_id.in_(sent))
                )
            await _log_outcomes(tx, results, worker=worker, now=now)
        return len(mine)

    async def release(self, ids: Sequence[int], *, worker: str, now: datetime) -> int:
        if not ids:
            return 0
        return await self._release(emails.c.id.in_(list(ids)), worker=worker, now=now)

    async def release_strays(self, holding: Sequence[int], *, worker: str, now: datetime) -> int:
        return await self._release(emails.c.id.not_in(list(holding)), worker=worker, now=now)

    async def _release(self, which: ColumnElement[bool], *, worker: str, now: datetime) -> int:
        async with self.db.write() as tx:
            return await tx.run(
                update(emails)
                .where(which, *_leased_to(worker))
                .values(
                    status=case(  # as lifecycle.released says, from the attempts before
                        (emails.c.attempts > 1, released(1).value),
                        else_=released(0).value,
                    ),
                    attempts=emails.c.attempts - 1,
                    next_attempt_at=now,
                    locked_until=None,
                    locked_by=None,
                    updated_at=now,
                )
            )


def _leased_to(worker: str) -> tuple[ColumnElement[bool], ...]:
    return emails.c.status == Status.PROCESSING, emails.c.locked_by == worker


_RECORD = (
    update(emails)
    .where(emails.c.id == bindparam("b_id"))
    .values(
        status=bindparam("b_status"),
        next_attempt_at=bindparam("b_next"),
        sent_at=bindparam("b_sent"),
        relay_message_id=bindparam("b_relay"),
        last_error=bindparam("b_error"),
        locked_until=None,
        locked_by=None,
        updated_at=bindparam("b_now"),
    )
)


def _record_values(result: AttemptResult, *, now: datetime) -> dict[str, Any]:
    sent = result.outcome is Outcome.SENT
    return {
        "b_id": result.email_id,
        "b_status": AFTER_ATTEMPT[result.outcome],
        "b_next": result.next_attempt_at,
        "b_sent": result.finished_at if sent else None,
        "b_relay": result.relay_message_id if sent else None,
        "b_error": None if sent else result.response,
        "b_now": now,
    }


def _held_by(results: Sequence[AttemptResult], worker: str) -> tuple[Any, ...]:
    return (emails.c.id.in_([r.email_id for r in results]), *_leased_to(worker))


async def _log_lost_leases(
    tx: Tx,
    due: Sequence[Any],
    claimed: Sequence[Any],
    *,
    worker: str,
    now: datetime,
) -> None:
    """History entries for claimed rows whose previous worker's lease had run out."""
    before = {r["id"]: r for r in due}
    lost = [
        {
            "email_id": r["id"],
            "at": now,
            "kind": "lease_expired",
            "attempt": r["attempts"] - 1,
            "response": lease_lost(before[r["id"]]["locked_by"]),
            "worker": worker,
        }
        for r in claimed
        if before[r["id"]]["status"] == Status.PROCESSING
    ]
    if lost:
        await tx.run(email_events.insert(), lost)


def _not_to(domains: Sequence[str]) -> list[Any]:
    """Conditions leaving out messages with a recipient at any of `domains`."""
    if not domains:
        return []
    addresses = func.lower(
        cast(emails.c.to_addrs, Text)
        + cast(emails.c.cc_addrs, Text)
        + cast(emails.c.bcc_addrs, Text)
    )
    return [not_(or_(*(addresses.like(domain_pattern(d), escape="\\") for d in domains)))]


async def _log_outcomes(
    tx: Tx, results: Sequence[AttemptResult], *, worker: str, now: datetime
) -> None:
    """Each attempt's outcome, once; beside those logged now for the first time, their
    per-recipient events and the addresses they proved bad (as PostgreSQL's record)."""
    logged = await tx.rows(
        select(email_events.c.email_id, email_events.c.attempt).where(
            text(OUTCOME_KINDS_SQL), email_events.c.email_id.in_([r.email_id for r in results])
        )
    )
    before = {(r["email_id"], r["attempt"]) for r in logged}
    new = [r for r in results if (r.email_id, r.attempt) not in before]
    if not new:
        return
    await tx.run(email_events.insert(), event_rows(new, worker=worker))
    if about := await _not_yet_skipped(tx, recipient_event_rows(new, worker=worker)):
        await tx.run(email_events.insert(), about)
    barred = {row["address"]: row for row in suppression_rows(new)}
    if barred:
        columns = ("address", "reason", "message_id", "detail")
        rows = [{c: row[c] for c in columns} | {"created_at": now} for row in barred.values()]
        await tx.run(_SUPPRESS, rows)


async def _not_yet_skipped(tx: Tx, about: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per-recipient events without the email.suppressed of a recipient already skipped
    at an earlier attempt of the same message (one event per message and recipient)."""
    skipped = EventType.EMAIL_SUPPRESSED.value
    ids = {row["email_id"] for row in about if row["type"] == skipped}
    if not ids:
        return about
    found = await tx.rows(
        select(email_events.c.email_id, email_events.c.recipient).where(
            email_events.c.type == skipped, email_events.c.email_id.in_(ids)
        )
    )
    seen = {(r["email_id"], r["recipient"]) for r in found}
    return [r for r in about if r["type"] != skipped or (r["email_id"], r["recipient"]) not in seen]


async def _suppressed(tx: Tx, rows: Sequence[Any]) -> set[str]:
    """Which recipients of these message rows are on the suppression list (normalised)."""
    addresses = recipients_of(rows)
    if not addresses:
        return set()
    found = await tx.rows(
        select(suppressions.c.address).where(suppressions.c.address.in_(addresses))
    )
    return {r["address"] for r in found}


async def _existing(
    tx: Tx, keys: Sequence[tuple[str, str]]
) -> dict[tuple[str, str], tuple[str, str | None]]:
    if not keys:
        return {}
    found = await tx.rows(
        select(
            emails.c.idempotency_scope,
            emails.c.client_message_id,
            emails.c.message_id,
            emails.c.payload_hash,
        ).where(tuple_(emails.c.idempotency_scope, emails.c.client_message_id).in_(list(keys)))
    )
    return {client_key(r): (r["message_id"], r["payload_hash"]) for r in found}


async def _store_attachments(tx: Tx, items: Sequence[NewEmail], inserted: set[str]) -> None:
    carrying = {
        i.email.message_id: i.email.attachments
        for i in items
        if i.email.attachments and i.email.message_id in inserted
    }
    if not carrying:
        return
    ids = await tx.rows(
        select(emails.c.message_id, emails.c.id).where(emails.c.message_id.in_(list(carrying)))
    )
    rows = [row for r in ids for row in attachment_rows(r["id"], carrying[r["message_id"]])]
    await tx.run(email_attachments.insert(), rows)


def _configure_connection(dbapi_connection: Any, _record: Any) -> None:
    # Let SQLAlchemy's "begin" event issue BEGIN itself, so writes can be IMMEDIATE.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


async def _dangling(conn: AsyncConnection) -> list[tuple[Any, ...]]:
    """PRAGMA foreign_key_check: (table, rowid, parent, key) of each dangling reference."""
    return [tuple(row) for row in await conn.exec_driver_sql("PRAGMA foreign_key_check")]


def _configure_migration(dbapi_connection: Any, record: Any) -> None:
    _configure_connection(dbapi_connection, record)
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=OFF")
    cursor.close()


def _begin(conn: Any) -> None:
    immediate = conn.get_execution_options().get("odiseo_write", False)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")
