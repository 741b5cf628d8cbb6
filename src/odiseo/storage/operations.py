"""The dashboard's own tables and questions, once in SQLAlchemy Core for both engines.

Sign-ins (ui_sessions), the workers' heartbeats (workers), and the recent activity
the overview charts: typed events counted per span of time, read through the index
on (type, at), so the cost follows the span asked about, not the table's history.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Integer, cast, delete, func, select
from sqlalchemy.dialects import postgresql, sqlite

from odiseo.domain.events import EventType
from odiseo.domain.operations import ActivityCount, RecentFailure, UiSession, WorkerSeen
from odiseo.storage.database import Database
from odiseo.storage.tables import email_events, emails, ui_sessions, workers

WORKERS_FORGOTTEN_AFTER = timedelta(days=7)  # a worker not seen for this long is dropped


class OperationsStore:
    """Sessions, workers and activity, on either engine."""

    def __init__(self, db: Database, *, dialect: str) -> None:
        self.db = db
        self.dialect = dialect
        self._insert = postgresql.insert if dialect == "postgresql" else sqlite.insert

    # -- sign-ins --------------------------------------------------------------------

    async def open_session(self, session: UiSession, *, now: datetime) -> None:
        """Keep a new sign-in; the expired ones are dropped in the same transaction."""
        async with self.db.write() as tx:
            await tx.run(delete(ui_sessions).where(ui_sessions.c.expires_at <= now))
            await tx.run(
                ui_sessions.insert().values(
                    id=session.id,
                    key_id=session.key_id,
                    csrf=session.csrf,
                    created_at=session.created_at,
                    expires_at=session.expires_at,
                )
            )

    async def session(self, session_id: str, *, now: datetime) -> UiSession | None:
        """The sign-in with this id, unless it has expired."""
        async with self.db.read() as tx:
            row = await tx.first(
                select(ui_sessions).where(
                    ui_sessions.c.id == session_id, ui_sessions.c.expires_at > now
                )
            )
        if row is None:
            return None
        return UiSession(
            id=row["id"],
            key_id=row["key_id"],
            csrf=row["csrf"],
            created_at=row["created_at"],
            expires_at=row["expires_at"],
        )

    async def close_session(self, session_id: str) -> None:
        async with self.db.write() as tx:
            await tx.run(delete(ui_sessions).where(ui_sessions.c.id == session_id))

    # -- workers ---------------------------------------------------------------------

    async def worker_seen(self, worker: WorkerSeen) -> None:
        """Record a worker's heartbeat (one row per worker, replaced)."""
        values = {
            "name": worker.name,
            "started_at": worker.started_at,
            "last_seen": worker.last_seen,
            "delivered": worker.delivered,
        }
        statement = (
            self._insert(workers)
            .values(**values)
            .on_conflict_do_update(
                index_elements=["name"],
                set_={"last_seen": worker.last_seen, "delivered": worker.delivered},
            )
        )
        forgotten = worker.last_seen - WORKERS_FORGOTTEN_AFTER
        async with self.db.write() as tx:
            await tx.run(statement)
            await tx.run(delete(workers).where(workers.c.last_seen < forgotten))

    async def workers(self) -> list[WorkerSeen]:
        """Every worker seen lately, the most recently seen first."""
        async with self.db.read() as tx:
            rows = await tx.rows(select(workers).order_by(workers.c.last_seen.desc()).limit(100))
        return [
            WorkerSeen(
                name=row["name"],
                started_at=row["started_at"],
                last_seen=row["last_seen"],
                delivered=int(row["delivered"]),
            )
            for row in rows
        ]

    # -- activity --------------------------------------------------------------------

    async def activity(
        self,
        types: Sequence[EventType],
        *,
        since: datetime,
        until: datetime | None = None,
        span_seconds: int,
    ) -> list[ActivityCount]:
        """Events of `types` from `since` (to before `until`), counted per span of
        `span_seconds`."""
        bucket = self._span_number(email_events.c.at, span_seconds)
        conditions = [email_events.c.type.in_([t.value for t in types]), email_events.c.at >= since]
        if until is not None:
            conditions.append(email_events.c.at < until)
        statement = (
            select(email_events.c.type, bucket.label("bucket"), func.count().label("n"))
            .where(*conditions)
            .group_by(email_events.c.type, bucket)
        )
        async with self.db.read() as tx:
            rows = await tx.rows(statement)
        return [
            ActivityCount(
                type=row["type"],
                start=datetime.fromtimestamp(int(row["bucket"]) * span_seconds, UTC),
                count=int(row["n"]),
            )
            for row in rows
        ]

    def _span_number(self, column: Any, span_seconds: int) -> Any:
        """Which span of `span_seconds` since 1970 a UTC time column falls in."""
        if self.dialect == "postgresql":
            return func.floor(func.extract("epoch", column) / span_seconds)
        return cast(func.strftime("%s", column), Integer) // span_seconds  # integer division

    async def failures(self, *, since: datetime, limit: int) -> list[RecentFailure]:
        """The newest messages given up on since `since` (at most `limit`), with why."""
        statement = (
            select(
                email_events.c.at,
                email_events.c.smtp_code,
                email_events.c.response,
                emails.c.to_addrs,
            )
            .join(emails, emails.c.id == email_events.c.email_id)
            .where(
                email_events.c.type == EventType.EMAIL_FAILED.value,
                email_events.c.at >= since,
            )
            .order_by(email_events.c.at.desc())
            .limit(limit)
        )
        async with self.db.read() as tx:
            rows = await tx.rows(statement)
        return [
            RecentFailure(
                at=row["at"],
                smtp_code=row["smtp_code"],
                response=row["response"],
                to=tuple(row["to_addrs"]),
            )
            for row in rows
        ]
