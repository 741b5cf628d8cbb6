"""The rarely called verbs of the queue, written once in SQLAlchemy Core for both engines.

Lookups, search and counts; an operator's cancel, reschedule and requeue; the
per-key request counter. Each engine's store inherits these and adds the hot
verbs (enqueue, claim, heartbeat, record, release) in its own module; neither
overrides anything here. Statements run through `database.Tx`, on the engine's
one connection pool.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Executable, bindparam, delete, func, select, text, update
from sqlalchemy.dialects import postgresql, sqlite

from odiseo.domain.events import EventType
from odiseo.domain.lifecycle import MOVABLE, WAITING, sources, sql_in
from odiseo.domain.models import Attachment, EmailFilter, EnqueueSettings, QueuedEmail, Status
from odiseo.domain.webhooks import DeliveryStatus
from odiseo.errors import InvalidTransition, NotFound
from odiseo.storage.contract import Gauges
from odiseo.storage.database import Database, Tx, fixed
from odiseo.storage.limits import LimitStore
from odiseo.storage.operations import OperationsStore
from odiseo.storage.outcomes import OutcomeStore
from odiseo.storage.retention import RetentionStore
from odiseo.storage.rows import attachments_by_email, event_of, from_row
from odiseo.storage.search import json_element, json_text
from odiseo.storage.tables import (
    CLAIMABLE_SQL,
    UTCDateTime,
    email_attachments,
    email_events,
    emails,
    enqueue_settings,
    rate_limits,
    status_counts,
)
from odiseo.storage.templates import TemplateStore
from odiseo.storage.webhooks import WebhookStore


class SharedVerbs:
    """The verbs both engines run alike. `db` and `dialect` come from the engine."""

    dialect: str

    def __init__(self, db: Database, *, wake: Callable[[Tx], Awaitable[None]]) -> None:
        self.db = db
        self.wake = wake  # wakes waiting workers once a transaction commits
        self.templates = TemplateStore(db)
        self.outcomes = OutcomeStore(db, dialect=self.dialect)
        self.retention = RetentionStore(db)
        self.limits = LimitStore(db, dialect=self.dialect)
        self.webhooks = WebhookStore(db)
        self.operations = OperationsStore(db, dialect=self.dialect)

    async def ping(self) -> None:
        """Raise StoreUnavailable unless the database answers a trivial query on the queue's
        table (so a missing schema or privilege shows here too, not at the first email)."""
        async with self.db.read() as tx:
            await tx.scalar(select(emails.c.id).limit(1))

    async def publish_enqueue_settings(self, settings: EnqueueSettings, *, now: datetime) -> None:
        """Replace the one row of rules the SQL function enqueue() reads.

        One upsert: processes started together (compose's API and worker) each publish
        at start, and DELETE then INSERT in two transactions made both insert id 1."""
        row = {
            "id": 1,
            "from_email": settings.from_email,
            "from_name": settings.from_name,
            "allowed_senders": list(settings.allowed_senders),
            "message_id_domain": settings.message_id_domain,
            "max_message_bytes": settings.max_message_bytes,
            "max_retries": settings.max_retries,
            "updated_at": now,
        }
        insert = postgresql.insert if self.dialect == "postgresql" else sqlite.insert
        statement = insert(enqueue_settings).values(**row)
        statement = statement.on_conflict_do_update(
            index_elements=["id"],
            set_={name: statement.excluded[name] for name in row if name != "id"},
        )
        async with self.db.write() as tx:
            await tx.run(statement)

    # -- questions -------------------------------------------------------------------

    async def get(self, message_id: str) -> QueuedEmail | None:
        """The message with its whole event history, or None."""
        async with self.db.read() as tx:
            row = await tx.first(select(emails).where(emails.c.message_id == message_id))
            if row is None:
                return None
            events = await tx.rows(
                select(email_events)
                .where(email_events.c.email_id == row["id"])
                .order_by(email_events.c.id)
            )
            files = await attachments(tx, [row["id"]] if row["attachment_count"] else [])
        history = tuple(event_of(e) for e in events)
        return from_row(row, events=history, attachments=files.get(row["id"], ()))

    async def counts(self) -> dict[Status, int]:
        """How many messages are in each status (every status present, zeros included),
        from the counters the database's triggers keep (migration 0011)."""
        async with self.db.read() as tx:
            rows = await tx.rows(
                select(status_counts.c.status, func.sum(status_counts.c.n).label("n")).group_by(
                    status_counts.c.status
                )
            )
        found = {Status(row["status"]): int(row["n"]) for row in rows}
        return {status: found.get(status, 0) for status in Status}

    async def oldest_due_seconds(self, *, now: datetime) -> float:
        """How long the longest-waiting due message has been due (0 when none is)."""
        async with self.db.read() as tx:
            earliest: datetime | None = await tx.scalar(_OLDEST_DUE, {"now": now})
        return _waited(earliest, now)

    async def gauges(self, *, now: datetime) -> Gauges:
        """The counts by status, the oldest due wait, the oldest pending webhook delivery
        and the scopes throttled now (/metrics): one statement on one connection, so a
        scrape costs one round trip and its figures are one snapshot."""
        async with self.db.read() as tx:
            rows = await tx.rows(_GAUGES, {"now": now})
        counts = dict.fromkeys(Status, 0)
        moments: dict[str, datetime | None] = {}
        throttled = []
        for row in rows:
            if row["kind"] == "count":
                counts[Status(row["name"])] = int(row["n"])
            elif row["kind"] == "throttled":
                throttled.append((row["name"], row["domain"]))
            else:
                moments[row["kind"]] = row["at"]
        return Gauges(
            counts=counts,
            oldest_due_seconds=_waited(moments["due"], now),
            webhook_oldest_pending_seconds=_waited(moments["webhook"], now),
            throttled=tuple(throttled),
        )

    async def search(
        self, query: EmailFilter, *, limit: int, before: int | None, scan: int | None = None
    ) -> tuple[list[QueuedEmail], int | None]:
        """Messages matching `query`, newest first, below the id `before`.

        Keyset pagination on the id: new messages never shift a page already seen.
        Returns the page and the id to continue below (None on the last page).

        With `scan` (the dashboard, whose pages must cost the same on any table), the
        creation times are first turned into an id range (ids grow with created_at, a
        margin of SKEW_IDS either side for concurrent writers), and a tag or recipient,
        which no index serves, is looked for among at most `scan` ids below where the
        page starts: a page short of `limit` then continues below what was looked at.
        """
        conditions = _conditions(query)
        async with self.db.read() as tx:
            floor, windowed = None, False
            if scan is not None:
                before, floor, windowed = await _id_range(tx, query, before=before, scan=scan)
            if before is not None:
                conditions.append(emails.c.id < before)
            if floor is not None:
                conditions.append(emails.c.id >= floor)
            rows = await tx.rows(
                select(emails).where(*conditions).order_by(emails.c.id.desc()).limit(limit + 1)
            )
            page = [from_row(row) for row in rows[:limit]]
            if len(rows) > limit:
                return page, page[-1].id
            if windowed and floor is not None:  # the window ended the page: look further
                lowest = await tx.scalar(select(func.min(emails.c.id)))
                return page, (floor if lowest is not None and floor > lowest else None)
        return page, None

    # -- an operator's changes ---------------------------------------------------------

    async def cancel(self, message_id: str, *, now: datetime) -> None:
        """Cancel a message that is still waiting; raises NotFound or InvalidTransition."""
        values = {"status": Status.CANCELLED, "next_attempt_at": None}
        await self._operate(message_id, values=values, event="cancelled", now=now)

    async def reschedule(self, message_id: str, *, send_at: datetime, now: datetime) -> None:
        """Move a message no worker has claimed to `send_at` (the past means now);
        raises NotFound or InvalidTransition."""
        later = send_at > now
        values = {
            "status": Status.SCHEDULED if later else Status.PENDING,
            "next_attempt_at": send_at if later else now,
        }
        await self._operate(
            message_id, values=values, event="rescheduled", now=now, allowed=MOVABLE
        )

    async def requeue(self, message_id: str, *, now: datetime) -> None:
        """Send a failed message again with a fresh retry budget; its history is kept.
        Raises NotFound or InvalidTransition."""
        values = {"status": Status.PENDING, "next_attempt_at": now, "attempts": 0}
        await self._operate(message_id, values=values, event="requeued", now=now)

    async def requeue_failed(self, *, now: datetime, created_after: datetime | None = None) -> int:
        """Requeue every failed message (created after `created_after`); how many."""
        conditions: list[Any] = [emails.c.status.in_(sources(Status.PENDING))]
        if created_after is not None:
            conditions.append(emails.c.created_at > created_after)
        async with self.db.write() as tx:
            changed = await tx.rows(
                update(emails)
                .where(*conditions)
                .values(status=Status.PENDING, next_attempt_at=now, attempts=0, updated_at=now)
                .returning(emails.c.id)
            )
            if changed:
                events = [{"email_id": r["id"], "at": now, "kind": "requeued"} for r in changed]
                await tx.run(email_events.insert(), events)
                await self.wake(tx)
        return len(changed)

    async def _operate(
        self,
        message_id: str,
        *,
        values: dict[str, Any],
        event: str,
        now: datetime,
        allowed: tuple[Status, ...] | None = None,
    ) -> None:
        """An operator's status change, only from the statuses lifecycle allows (`allowed`,
        or those that may move to the new status), logged."""
        allowed = allowed or sources(values["status"])
        async with self.db.write() as tx:
            changed = await tx.scalar(
                update(emails)
                .where(emails.c.message_id == message_id, emails.c.status.in_(allowed))
                .values(**values, updated_at=now)
                .returning(emails.c.id)
            )
            if changed is not None:
                type_ = EventType.EMAIL_CANCELLED if values["status"] is Status.CANCELLED else None
                entry = {"email_id": changed, "at": now, "kind": event}
                entry |= {"type": type_, "webhook_pending": type_ is not None}
                await tx.run(email_events.insert(), [entry])
                if values["status"] == Status.PENDING:
                    await self.wake(tx)
                return
            current = await tx.scalar(
                select(emails.c.status).where(emails.c.message_id == message_id)
            )
        if current is None:
            raise NotFound(f"no message {message_id!r}")
        raise InvalidTransition(f"the message is {current}; only {'/'.join(allowed)} allowed")

    # -- rate limits ---------------------------------------------------------------------

    async def count_request(self, key: str, *, window: int) -> int:
        """Count one request of `key` in minute `window`; the window's count so far."""
        insert = postgresql.insert if self.dialect == "postgresql" else sqlite.insert
        statement = (
            insert(rate_limits)
            .values(key=key, window=window, hits=1)
            .on_conflict_do_update(
                index_elements=["key", "window"], set_={"hits": rate_limits.c.hits + 1}
            )
            .returning(rate_limits.c.hits)
        )
        async with self.db.write() as tx:
            hits = int(await tx.scalar(statement))
            if hits == 1:  # a new minute's first request: forget this key's old ones
                await tx.run(
                    delete(rate_limits).where(
                        rate_limits.c.key == key, rate_limits.c.window < window
                    )
                )
        return hits


async def attachments(tx: Tx, email_ids: Sequence[int]) -> dict[int, tuple[Attachment, ...]]:
    """The attachments of these messages, in their original order."""
    if not email_ids:
        return {}
    rows = await tx.rows(
        select(email_attachments)
        .where(email_attachments.c.email_id.in_(list(email_ids)))
        .order_by(email_attachments.c.email_id, email_attachments.c.position)
    )
    return attachments_by_email(rows)


# The claim index (ix_emails_due) holds the claimable rows by (priority, due time), so a
# plain min() of the due time reads every entry of a long backlog. This walks the
# priorities present instead, one index probe each (the next priority above the last),
# and takes the earliest due time within each: a few entries, however long the backlog.
# Written as text and compiled once per process (`fixed`): compiling the same CTE from
# Core on every call costs more than running it.
_LEVELS = f"""levels (priority) AS (
    SELECT min(priority) FROM emails WHERE {CLAIMABLE_SQL}
    UNION ALL
    SELECT (SELECT min(priority) FROM emails
            WHERE {CLAIMABLE_SQL} AND priority > levels.priority)
    FROM levels WHERE levels.priority IS NOT NULL
)"""
_EARLIEST_DUE = f"""min((SELECT min(next_attempt_at) FROM emails
            WHERE {sql_in(WAITING)} AND priority = levels.priority
              AND next_attempt_at <= :now))"""
_OLDEST_DUE = fixed(
    text(f"WITH RECURSIVE {_LEVELS}\nSELECT {_EARLIEST_DUE} AS earliest\nFROM levels")
    .bindparams(bindparam("now", type_=UTCDateTime))
    .columns(earliest=UTCDateTime)
)

# /metrics' reads as rows of one shape (kind, name, domain, n, at), so that both engines
# answer them in one statement. The webhook deliveries' status is literal, as in
# deliveries.py, so PostgreSQL can read the pending ones from their partial index.
_GAUGES = fixed(
    text(
        f"""
WITH RECURSIVE {_LEVELS}
SELECT 'due' AS kind, NULL AS name, NULL AS domain, CAST(NULL AS BIGINT) AS n,
       (SELECT {_EARLIEST_DUE} FROM levels) AS at
UNION ALL
SELECT 'webhook', NULL, NULL, NULL, (SELECT min(created_at) FROM webhook_deliveries
                                     WHERE status = '{DeliveryStatus.PENDING.value}')
UNION ALL
SELECT 'count', status, NULL, CAST(sum(n) AS BIGINT), NULL FROM status_counts GROUP BY status
UNION ALL
SELECT 'throttled', scope, domain, NULL, NULL FROM throttles WHERE recovered_at > :now"""
    )
    .bindparams(bindparam("now", type_=UTCDateTime))
    .columns(at=UTCDateTime)
)


def gauges_query(now: datetime) -> Executable:
    """The rows of SharedVerbs.gauges at `now`, as oldest_due_query."""
    return _GAUGES.params(now=now)


def _waited(since: datetime | None, now: datetime) -> float:
    """Seconds from `since` to `now`, 0 when there is no `since` (or it is later)."""
    return 0.0 if since is None else max(0.0, (now - since).total_seconds())


def oldest_due_query(now: datetime) -> Executable:
    """The earliest due time of a message waiting at `now` (None when none is): the
    statement with its value, to be shown (EXPLAIN); the verb passes `now` apart."""
    return _OLDEST_DUE.params(now=now)


SKEW_IDS = 10_000  # how far from its time order a concurrent writer's id may land


def _scanned(query: EmailFilter) -> bool:
    """Whether the query has a filter no index serves (a scan window bounds it)."""
    return query.tag is not None or query.recipient is not None


async def _id_range(
    tx: Tx, query: EmailFilter, *, before: int | None, scan: int
) -> tuple[int | None, int | None, bool]:
    """The ids a dashboard search looks below (`before`) and at or above (a floor), and
    whether the floor is the scan window's (so older ids remain to be looked at)."""
    newest = int(await tx.scalar(select(func.max(emails.c.id))) or 0) + 1
    top = newest if before is None else min(before, newest)
    if query.created_before is not None:
        edge = await _first_id_since(tx, query.created_before)
        if edge is not None:
            top = min(top, edge + SKEW_IDS)
    floor = None
    if query.created_after is not None:
        edge = await _first_id_since(tx, query.created_after)
        floor = max(0, (newest + SKEW_IDS if edge is None else edge) - SKEW_IDS)
    if not _scanned(query):
        return top, floor, False
    start = top
    if floor is not None and floor >= start - scan:
        return top, floor, False
    return top, start - scan, True


async def _first_id_since(tx: Tx, moment: datetime) -> int | None:
    """The smallest id created at or after `moment`, by bisection on the primary key
    (a few dozen index probes however long the table); None if there is none."""
    low = await tx.scalar(select(func.min(emails.c.id)))
    high = await tx.scalar(select(func.max(emails.c.id)))
    found = None
    if low is None or high is None:
        return None
    while low <= high:
        middle = (low + high) // 2
        row = await tx.first(
            select(emails.c.id, emails.c.created_at)
            .where(emails.c.id >= middle)
            .order_by(emails.c.id)
            .limit(1)
        )
        if row is None or row["id"] > high:
            high = middle - 1
        elif row["created_at"] >= moment:
            found, high = row["id"], middle - 1
        else:
            low = row["id"] + 1
    return int(found) if found is not None else None


def _conditions(query: EmailFilter) -> list[Any]:
    conditions: list[Any] = []
    if query.status is not None:
        conditions.append(emails.c.status == query.status)
    if query.tag is not None:
        conditions.append(json_text(emails.c.tags).like(json_element(query.tag), escape="\\"))
    if query.recipient is not None:
        pattern = json_element(query.recipient.lower())
        conditions.append(
            func.lower(json_text(emails.c.to_addrs)).like(pattern, escape="\\")
            | func.lower(json_text(emails.c.cc_addrs)).like(pattern, escape="\\")
            | func.lower(json_text(emails.c.bcc_addrs)).like(pattern, escape="\\")
        )
    if query.created_after is not None:
        conditions.append(emails.c.created_at >= query.created_after)
    if query.created_before is not None:
        conditions.append(emails.c.created_at < query.created_before)
    return conditions
