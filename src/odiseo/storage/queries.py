"""Read-only questions about the queue, shared by both engines: EmailStore inherits them."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Text, cast, func, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from odiseo.domain.models import Attachment, EmailFilter, Event, QueuedEmail, Status
from odiseo.storage.failures import translate_errors
from odiseo.storage.rows import attachments_by_email, from_row
from odiseo.storage.tables import email_attachments, email_events, emails


class Queries:
    """Lookups, counts and search; never writes."""

    engine: AsyncEngine

    async def get(self, message_id: str) -> QueuedEmail | None:
        """The message with its whole event history, or None."""
        with translate_errors():
            async with self.engine.connect() as conn:
                row = (
                    await conn.execute(select(emails).where(emails.c.message_id == message_id))
                ).first()
                if row is None:
                    return None
                events = await conn.execute(
                    select(email_events)
                    .where(email_events.c.email_id == row.id)
                    .order_by(email_events.c.id)
                )
                history = tuple(
                    Event(
                        at=e.at,
                        kind=e.kind,
                        attempt=e.attempt,
                        smtp_code=e.smtp_code,
                        response=e.response,
                        duration_ms=e.duration_ms,
                        worker=e.worker,
                    )
                    for e in events
                )
                files = await self._attachments(conn, [row.id] if row.attachment_count else [])
        return from_row(row._mapping, events=history, attachments=files.get(row.id, ()))

    async def counts(self) -> dict[Status, int]:
        """How many messages are in each status (every status present, zeros included)."""
        with translate_errors():
            async with self.engine.connect() as conn:
                rows = await conn.execute(
                    select(emails.c.status, func.count()).group_by(emails.c.status)
                )
                found = {Status(status): count for status, count in rows}
        return {status: found.get(status, 0) for status in Status}

    async def oldest_due_seconds(self, *, now: datetime) -> float:
        """How long the longest-waiting due message has been due (0 when none is)."""
        with translate_errors():
            async with self.engine.connect() as conn:
                earliest: datetime | None = (
                    await conn.execute(
                        select(func.min(emails.c.next_attempt_at)).where(
                            emails.c.status.in_([Status.PENDING, Status.SCHEDULED]),
                            emails.c.next_attempt_at <= now,
                        )
                    )
                ).scalar()
        return 0.0 if earliest is None else max(0.0, (now - earliest).total_seconds())

    async def next_due_at(self) -> datetime | None:
        """When the earliest waiting message becomes due (None when nothing waits)."""
        with translate_errors():
            async with self.engine.connect() as conn:
                earliest: datetime | None = (
                    await conn.execute(
                        select(func.min(emails.c.next_attempt_at)).where(
                            emails.c.status.in_(
                                [Status.PENDING, Status.SCHEDULED, Status.PROCESSING]
                            )
                        )
                    )
                ).scalar()
        return earliest

    async def search(
        self, query: EmailFilter, *, limit: int, before: int | None
    ) -> tuple[list[QueuedEmail], int | None]:
        """Messages matching `query`, newest first, after the cursor `before` (an id).

        Keyset pagination on the id: new messages never shift a page already seen.
        Returns the page and the cursor of the next one (None on the last page).
        """
        conditions: list[Any] = []
        if query.status is not None:
            conditions.append(emails.c.status == query.status)
        if query.tag is not None:
            conditions.append(_json_text(emails.c.tags).like(_element(query.tag), escape="\\"))
        if query.recipient is not None:
            pattern = _element(query.recipient.lower())
            conditions.append(
                func.lower(_json_text(emails.c.to_addrs)).like(pattern, escape="\\")
                | func.lower(_json_text(emails.c.cc_addrs)).like(pattern, escape="\\")
                | func.lower(_json_text(emails.c.bcc_addrs)).like(pattern, escape="\\")
            )
        if query.created_after is not None:
            conditions.append(emails.c.created_at >= query.created_after)
        if query.created_before is not None:
            conditions.append(emails.c.created_at < query.created_before)
        if before is not None:
            conditions.append(emails.c.id < before)
        with translate_errors():
            async with self.engine.connect() as conn:
                rows = (
                    await conn.execute(
                        select(emails)
                        .where(*conditions)
                        .order_by(emails.c.id.desc())
                        .limit(limit + 1)
                    )
                ).all()
        page = [from_row(row._mapping) for row in rows[:limit]]
        return page, (page[-1].id if len(rows) > limit else None)

    async def _attachments(
        self, conn: AsyncConnection, email_ids: Sequence[int]
    ) -> dict[int, tuple[Attachment, ...]]:
        """The attachments of these messages, in their original order."""
        if not email_ids:
            return {}
        rows = await conn.execute(
            select(email_attachments)
            .where(email_attachments.c.email_id.in_(list(email_ids)))
            .order_by(email_attachments.c.email_id, email_attachments.c.position)
        )
        return attachments_by_email([row._mapping for row in rows])


def _json_text(column: Any) -> Any:
    return cast(column, Text)


def _element(value: str) -> str:
    """A LIKE pattern matching `value` as one element of a JSON array.

    The element is written as the JSON serialiser wrote it (quotes, escapes and
    \\u sequences included), then made literal for LIKE.
    """
    encoded = json.dumps(value)
    escaped = encoded.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def encode_cursor(email_id: int) -> str:
    return base64.urlsafe_b64encode(str(email_id).encode()).decode().rstrip("=")


# emails.id is a 64-bit BIGINT: a cursor naming a larger id is not one we gave out, and
# neither engine could even compare with it.
_ID_MAX = 2**63 - 1
_DIGITS = re.compile(r"[1-9][0-9]{0,18}")


def decode_cursor(cursor: str) -> int | None:
    """The id in a cursor, or None when it is not one of ours."""
    try:
        value = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
    except (ValueError, UnicodeDecodeError):
        return None
    if not _DIGITS.fullmatch(value) or int(value) > _ID_MAX:
        return None
    return int(value)
