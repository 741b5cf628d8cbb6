"""EmailStore: the queue contract, one verb per use case, shared by both engines.

What differs between PostgreSQL and SQLite (how a claim locks, how workers are
woken, how a duplicate insert is skipped) lives in `postgres.py` and
`sqlite.py`; everything else is here, written once in SQLAlchemy Core.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Row, bindparam, case, delete, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.sql import Insert

from odiseo.domain.models import (
    Attachment,
    AttemptResult,
    NewEmail,
    Outcome,
    QueuedEmail,
    Status,
)
from odiseo.errors import Duplicate, InvalidTransition, NotFound
from odiseo.storage.failures import translate_errors
from odiseo.storage.queries import Queries
from odiseo.storage.rows import attachment_rows, client_key, from_row, to_row
from odiseo.storage.tables import email_attachments, email_events, emails, rate_limits
from odiseo.storage.templates import TemplateStore

log = logging.getLogger(__name__)

_FINISHED_STATUS = {
    Outcome.SENT: Status.SENT,
    Outcome.RETRY: Status.SCHEDULED,
    Outcome.FAILED: Status.FAILED,
}


@dataclass(frozen=True, kw_only=True)
class Enqueued:
    """The outcome of storing one message: created now, or found under its client id."""

    message_id: str
    created: bool
    same_payload: bool = True


class EmailStore(Queries, abc.ABC):
    """The durable queue. Every time is passed in (`now`), UTC-aware."""

    dialect: str

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.templates = TemplateStore(engine, self._write)

    # -- lifecycle -------------------------------------------------------------

    @abc.abstractmethod
    async def migrate(self) -> None:
        """Create or upgrade the schema, safe to call from several processes at once."""

    async def close(self) -> None:
        await self.engine.dispose()

    async def ping(self) -> None:
        """Raise StoreUnavailable unless the database answers a trivial query."""
        with translate_errors():
            async with self.engine.connect() as conn:
                await conn.execute(select(1))

    # -- engine-specific hooks -------------------------------------------------

    @abc.abstractmethod
    def _insert_skipping_duplicates(self) -> Insert:
        """An INSERT into emails that silently skips a taken client_message_id."""

    @abc.abstractmethod
    def _upsert_counter(self) -> Any:
        """The engine's INSERT into rate_limits, which has on_conflict_do_update."""

    @abc.abstractmethod
    async def _claim(
        self, conn: AsyncConnection, *, limit: int, worker: str, until: datetime, now: datetime
    ) -> list[Row[Any]]:
        """Mark up to `limit` due rows processing for `worker`; return them with old_status."""

    @contextlib.asynccontextmanager
    async def _write(self) -> AsyncIterator[AsyncConnection]:
        """A write transaction; engines may take their write lock up front."""
        with translate_errors():
            async with self.engine.begin() as conn:
                yield conn

    async def _after_enqueue(self, conn: AsyncConnection) -> None:
        """Called inside the enqueue transaction (SQLite wakes its in-process worker here)."""

    @abc.abstractmethod
    async def _wake(self, conn: AsyncConnection) -> None:
        """Wake waiting workers when this transaction commits (requeues, reschedules)."""

    @abc.abstractmethod
    async def wait_for_work(self, timeout: float) -> None:
        """Sleep up to `timeout` seconds, returning early when new mail may be due."""

    # -- verbs -----------------------------------------------------------------

    async def enqueue(self, items: Sequence[NewEmail], *, now: datetime) -> list[Enqueued]:
        """Store messages in one transaction; a known client_message_id creates nothing."""
        rows = [to_row(item, now=now) for item in items]
        inserted, existing = await self._insert(rows, items)
        return enqueued(rows, inserted, existing)

    async def _insert(
        self, rows: list[dict[str, Any]], items: Sequence[NewEmail]
    ) -> tuple[set[str], dict[tuple[str, str], tuple[str, str | None]]]:
        """Insert `rows` with their attachments; the message ids inserted, and the rows
        found instead under a taken client_message_id (message id, payload hash)."""
        async with self._write() as conn:
            keyed = [r for r in rows if r["client_message_id"] is not None]
            plain = [r for r in rows if r["client_message_id"] is None]
            if plain:
                await conn.execute(emails.insert(), plain)
            inserted: set[str] = {r["message_id"] for r in plain}
            for row in keyed:
                result = await conn.execute(
                    self._insert_skipping_duplicates().returning(emails.c.message_id), row
                )
                inserted.update(result.scalars().all())
            existing = await self._existing(
                conn, [r for r in keyed if r["message_id"] not in inserted]
            )
            await self._store_attachments(conn, items, inserted)
            if inserted:
                await self._after_enqueue(conn)
        return inserted, existing

    async def enqueue_one(self, item: NewEmail, *, now: datetime) -> str:
        """Store one message and return its message_id.

        Raises:
            Duplicate: its client_message_id is already stored (nothing written).
        """
        (result,) = await self.enqueue([item], now=now)
        if not result.created:
            raise Duplicate(result.message_id, same_payload=result.same_payload)
        return result.message_id

    async def _store_attachments(
        self, conn: AsyncConnection, items: Sequence[NewEmail], inserted: set[str]
    ) -> None:
        carrying = {
            i.email.message_id: i.email.attachments
            for i in items
            if i.email.attachments and i.email.message_id in inserted
        }
        if not carrying:
            return
        ids = await conn.execute(
            select(emails.c.message_id, emails.c.id).where(emails.c.message_id.in_(list(carrying)))
        )
        rows = [row for mid, eid in ids for row in attachment_rows(eid, carrying[mid])]
        await conn.execute(email_attachments.insert(), rows)

    async def _existing(
        self, conn: AsyncConnection, rows: list[dict[str, Any]]
    ) -> dict[tuple[str, str], tuple[str, str | None]]:
        if not rows:
            return {}
        columns = tuple_(emails.c.idempotency_scope, emails.c.client_message_id)
        found = await conn.execute(
            select(
                emails.c.idempotency_scope,
                emails.c.client_message_id,
                emails.c.message_id,
                emails.c.payload_hash,
            ).where(columns.in_([client_key(r) for r in rows]))
        )
        return {(scope, cid): (mid, digest) for scope, cid, mid, digest in found}

    async def claim_due(
        self, *, limit: int, worker: str, lease_seconds: float, now: datetime
    ) -> list[QueuedEmail]:
        """Claim up to `limit` due messages for `worker` and commit before returning.

        Due means pending or scheduled with `next_attempt_at <= now`, or processing
        with a lease that ran out (its worker is presumed dead). The claim is
        committed here, before any SMTP traffic: no row lock is held across the
        network, and a crash after this point is healed by the lease.
        """
        until = now + timedelta(seconds=lease_seconds)
        async with self._write() as conn:
            rows = await self._claim(conn, limit=limit, worker=worker, until=until, now=now)
            expired = [r for r in rows if r.old_status == Status.PROCESSING]
            if expired:
                await conn.execute(
                    email_events.insert(),
                    [
                        {
                            "email_id": r.id,
                            "at": now,
                            "kind": "lease_expired",
                            "attempt": r.attempts - 1,
                            "response": f"worker {r.old_worker} lost its lease",
                            "worker": worker,
                        }
                        for r in expired
                    ],
                )
            files = await self._attachments(conn, [r.id for r in rows if r.attachment_count])
        return claimed_messages([r._mapping for r in rows], files)

    async def extend_leases(
        self, ids: Sequence[int], *, worker: str, lease_seconds: float, now: datetime
    ) -> int:
        """Push back the lease of messages `worker` still holds; returns how many it held."""
        if not ids:
            return 0
        until = now + timedelta(seconds=lease_seconds)
        async with self._write() as conn:
            result = await conn.execute(
                update(emails)
                .where(*held_by(ids, worker))
                .values(locked_until=until, next_attempt_at=until)
            )
        return result.rowcount

    async def record_results(
        self, results: Sequence[AttemptResult], *, worker: str, now: datetime
    ) -> int:
        """Record finished attempts in one transaction; returns rows this worker still held.

        A row whose lease another worker took over is left to that worker; the
        attempt still enters the history.
        """
        if not results:
            return 0
        params = [
            {
                "b_id": r.email_id,
                "b_attempt": r.attempt,
                "b_status": _FINISHED_STATUS[r.outcome],
                "b_next": r.next_attempt_at,
                "b_sent": r.finished_at if r.outcome is Outcome.SENT else None,
                "b_error": None if r.outcome is Outcome.SENT else r.response,
            }
            for r in results
        ]
        statement = (
            update(emails)
            .where(
                emails.c.id == bindparam("b_id"),
                emails.c.attempts == bindparam("b_attempt"),
                emails.c.status == Status.PROCESSING,
                emails.c.locked_by == worker,
            )
            .values(
                status=bindparam("b_status"),
                next_attempt_at=bindparam("b_next"),
                sent_at=bindparam("b_sent"),
                last_error=bindparam("b_error"),
                locked_until=None,
                locked_by=None,
                updated_at=now,
            )
        )
        events = [
            {
                "email_id": r.email_id,
                "at": r.finished_at,
                "kind": r.outcome.value,
                "attempt": r.attempt,
                "smtp_code": r.smtp_code,
                "response": r.response,
                "duration_ms": round((r.finished_at - r.started_at).total_seconds() * 1000),
                "worker": worker,
            }
            for r in results
        ]
        async with self._write() as conn:
            # Lock the rows this worker still holds (drivers differ on executemany rowcounts).
            held = await conn.execute(
                select(emails.c.id, emails.c.attempts)
                .where(*held_by([r.email_id for r in results], worker))
                .with_for_update()
            )
            owned = {(row_id, attempts) for row_id, attempts in held}
            mine = [p for p in params if (p["b_id"], p["b_attempt"]) in owned]
            if mine:
                await conn.execute(statement, mine)
            await conn.execute(email_events.insert(), events)
        return len(mine)

    async def release(self, ids: Sequence[int], *, worker: str, now: datetime) -> int:
        """Hand back claimed messages that were never attempted (a clean stop)."""
        if not ids:
            return 0
        async with self._write() as conn:
            result = await conn.execute(
                update(emails)
                .where(*held_by(ids, worker))
                .values(
                    status=_released_status(),
                    attempts=emails.c.attempts - 1,
                    next_attempt_at=now,
                    locked_until=None,
                    locked_by=None,
                    updated_at=now,
                )
            )
        return result.rowcount

    async def cancel(self, message_id: str, *, now: datetime) -> None:
        """Cancel a message that is still waiting (pending or scheduled).

        Raises:
            NotFound: no such message.
            InvalidTransition: it is being sent, or already finished.
        """
        await self._operate(
            message_id,
            allowed=(Status.PENDING, Status.SCHEDULED),
            values={"status": Status.CANCELLED, "next_attempt_at": None},
            event="cancelled",
            now=now,
        )

    async def count_request(self, key: str, *, window: int) -> int:
        """Count one request of `key` in minute `window`; returns the window's count so far."""
        statement = self._upsert_counter().values(key=key, window=window, hits=1)
        statement = statement.on_conflict_do_update(
            index_elements=["key", "window"], set_={"hits": rate_limits.c.hits + 1}
        ).returning(rate_limits.c.hits)
        async with self._write() as conn:
            hits = int((await conn.execute(statement)).scalar_one())
            if hits == 1:  # first request of a new minute: forget this key's old ones
                await conn.execute(
                    delete(rate_limits).where(
                        rate_limits.c.key == key, rate_limits.c.window < window
                    )
                )
        return hits

    async def reschedule(self, message_id: str, *, send_at: datetime, now: datetime) -> None:
        """Move a message that no worker has claimed yet to `send_at` (the past means now).

        Raises:
            NotFound: no such message.
            InvalidTransition: it is being sent, or already finished.
        """
        later = send_at > now
        await self._operate(
            message_id,
            allowed=(Status.PENDING, Status.SCHEDULED),
            values={
                "status": Status.SCHEDULED if later else Status.PENDING,
                "next_attempt_at": send_at if later else now,
            },
            event="rescheduled",
            now=now,
        )

    async def requeue(self, message_id: str, *, now: datetime) -> None:
        """Send a failed message again with a fresh retry budget; its history is kept.

        Raises:
            NotFound: no such message.
            InvalidTransition: it has not failed.
        """
        await self._operate(
            message_id,
            allowed=(Status.FAILED,),
            values={"status": Status.PENDING, "next_attempt_at": now, "attempts": 0},
            event="requeued",
            now=now,
        )

    async def requeue_failed(self, *, now: datetime, created_after: datetime | None = None) -> int:
        """Requeue every failed message (created after `created_after`); returns how many."""
        conditions = [emails.c.status == Status.FAILED]
        if created_after is not None:
            conditions.append(emails.c.created_at > created_after)
        async with self._write() as conn:
            ids = (
                (
                    await conn.execute(
                        update(emails)
                        .where(*conditions)
                        .values(
                            status=Status.PENDING, next_attempt_at=now, attempts=0, updated_at=now
                        )
                        .returning(emails.c.id)
                    )
                )
                .scalars()
                .all()
            )
            if ids:
                await conn.execute(
                    email_events.insert(),
                    [{"email_id": i, "at": now, "kind": "requeued"} for i in ids],
                )
                await self._wake(conn)
        return len(ids)

    async def _operate(
        self,
        message_id: str,
        *,
        allowed: tuple[Status, ...],
        values: dict[str, Any],
        event: str,
        now: datetime,
    ) -> None:
        """An operator's status change, only from `allowed` states, with its event."""
        async with self._write() as conn:
            changed = (
                await conn.execute(
                    update(emails)
                    .where(emails.c.message_id == message_id, emails.c.status.in_(allowed))
                    .values(**values, updated_at=now)
                    .returning(emails.c.id)
                )
            ).scalar()
            if changed is not None:
                await conn.execute(
                    email_events.insert(), {"email_id": changed, "at": now, "kind": event}
                )
                if values["status"] == Status.PENDING:
                    await self._wake(conn)
                return
            current = (
                await conn.execute(select(emails.c.status).where(emails.c.message_id == message_id))
            ).scalar()
        if current is None:
            raise NotFound(f"no message {message_id!r}")
        raise InvalidTransition(f"the message is {current}; only {'/'.join(allowed)} allowed")


def enqueued(
    rows: list[dict[str, Any]],
    inserted: set[str],
    existing: dict[tuple[str, str], tuple[str, str | None]],
) -> list[Enqueued]:
    """Each row's outcome: created now, or the message already stored under its client id."""
    results = []
    for row in rows:
        if row["message_id"] in inserted:
            results.append(Enqueued(message_id=row["message_id"], created=True))
        else:
            message_id, payload_hash = existing[client_key(row)]
            results.append(
                Enqueued(
                    message_id=message_id,
                    created=False,
                    same_payload=payload_hash == row["payload_hash"],
                )
            )
    return results


def claimed_messages(
    rows: Sequence[Any], files: dict[int, tuple[Attachment, ...]]
) -> list[QueuedEmail]:
    """Claimed rows as messages, in claim order (priority, due time, id)."""
    claimed = sorted(
        (from_row(r, attachments=files.get(r["id"], ())) for r in rows), key=_claim_order
    )
    for message in claimed:
        log.debug("claimed", extra={"message_id": message.message_id, "attempt": message.attempts})
    return claimed


def held_by(ids: Sequence[int], worker: str) -> tuple[Any, ...]:
    """Rows among `ids` that `worker` still holds under its claim."""
    return (
        emails.c.id.in_(list(ids)),
        emails.c.status == Status.PROCESSING,
        emails.c.locked_by == worker,
    )


def claim_values(*, worker: str, until: datetime, now: datetime) -> dict[str, Any]:
    """The columns a claim sets: processing, one more attempt, leased to `worker` until `until`.

    The lease end is also the row's next_attempt_at, so an expired claim is simply due again.
    """
    return {
        "status": Status.PROCESSING,
        "attempts": emails.c.attempts + 1,
        "locked_by": worker,
        "locked_until": until,
        "next_attempt_at": until,
        "updated_at": now,
    }


def _released_status() -> Any:
    return case((emails.c.attempts > 1, Status.SCHEDULED.value), else_=Status.PENDING.value)


def _claim_order(message: QueuedEmail) -> tuple[int, datetime, int]:
    return (message.priority, message.next_attempt_at or message.created_at, message.id)


async def sleep_until_woken(event: asyncio.Event, timeout: float) -> None:
    """Wait for `event` up to `timeout` seconds, then clear it."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), timeout)
    event.clear()
