"""What became of messages: the published events, and the suppression list.

Written once in SQLAlchemy Core for both engines, like the other rarely called verbs.
The hot paths that write events and suppressions (recording an attempt) live in each
engine's record statement; this module reads them and serves an operator's changes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, or_, select
from sqlalchemy.dialects import postgresql, sqlite

from odiseo.domain.bounces import normalise_address
from odiseo.domain.events import EventType
from odiseo.domain.models import (
    EventFilter,
    PublishedEvent,
    Suppression,
    SuppressionReason,
)
from odiseo.storage.database import Database, Row, Tx
from odiseo.storage.rows import event_of
from odiseo.storage.search import json_element, json_text
from odiseo.storage.tables import email_events, emails, suppressions

# The columns of its message an event is shown with (GET /events, webhooks).
ABOUT = (
    emails.c.message_id,
    emails.c.client_message_id,
    emails.c.to_addrs,
    emails.c.cc_addrs,
    emails.c.bcc_addrs,
    emails.c.tags,
    emails.c.meta,
)


class OutcomeStore:
    """Published events and the suppression list, on either engine."""

    def __init__(self, db: Database, *, dialect: str) -> None:
        self.db = db
        self._insert = postgresql.insert if dialect == "postgresql" else sqlite.insert

    # -- events ----------------------------------------------------------------------

    async def events(
        self, query: EventFilter, *, limit: int, before: int | None
    ) -> tuple[list[PublishedEvent], int | None]:
        """Published events matching `query`, newest first, below the id `before`;
        the page and the id to continue below (None on the last page)."""
        conditions = _event_conditions(query)
        if before is not None:
            conditions.append(email_events.c.id < before)
        statement = (
            select(email_events, *ABOUT)
            .select_from(email_events.outerjoin(emails, emails.c.id == email_events.c.email_id))
            .where(*conditions)
            .order_by(email_events.c.id.desc())
            .limit(limit + 1)
        )
        async with self.db.read() as tx:
            rows = await tx.rows(statement)
        page = [published(row) for row in rows[:limit]]
        return page, (page[-1].event.id if len(rows) > limit else None)

    async def publish(self, type_: EventType, *, data: dict[str, Any], now: datetime) -> int:
        """Write an event about no message (webhook.*, *.throttled); its id."""
        row = {"at": now, "kind": type_.value, "type": type_.value, "data": data}
        async with self.db.write() as tx:
            return int(
                await tx.scalar(
                    email_events.insert()
                    .values(**row, webhook_pending=True)
                    .returning(email_events.c.id)
                )
            )

    # -- the suppression list --------------------------------------------------------

    async def suppressed(self, addresses: Sequence[str]) -> set[str]:
        """Which of these addresses are suppressed (as normalised addresses)."""
        keys = list({normalise_address(a) for a in addresses})
        if not keys:
            return set()
        async with self.db.read() as tx:
            rows = await tx.rows(
                select(suppressions.c.address).where(suppressions.c.address.in_(keys))
            )
        return {r["address"] for r in rows}

    async def suppression(self, address: str) -> Suppression | None:
        async with self.db.read() as tx:
            row = await tx.first(
                select(suppressions).where(suppressions.c.address == normalise_address(address))
            )
        return None if row is None else _suppression(row)

    async def suppressions(
        self,
        *,
        search: str | None = None,
        reason: SuppressionReason | None = None,
        limit: int,
        after: str | None = None,
    ) -> tuple[list[Suppression], str | None]:
        """Suppressions in address order, after the address `after`, optionally those
        whose address contains `search`; the page and where to continue."""
        conditions: list[Any] = []
        if search:
            escaped = search.lower().replace("\\", "\\\\").replace("%", "\\%")
            escaped = escaped.replace("_", "\\_")
            conditions.append(suppressions.c.address.like(f"%{escaped}%", escape="\\"))
        if reason is not None:
            conditions.append(suppressions.c.reason == reason.value)
        if after is not None:
            conditions.append(suppressions.c.address > after)
        async with self.db.read() as tx:
            rows = await tx.rows(
                select(suppressions)
                .where(*conditions)
                .order_by(suppressions.c.address)
                .limit(limit + 1)
            )
        page = [_suppression(r) for r in rows[:limit]]
        return page, (page[-1].address if len(rows) > limit else None)

    async def suppress(self, entry: Suppression) -> Suppression:
        """Add or replace the suppression of an address; what is stored."""
        address = normalise_address(entry.address)
        values = {
            "address": address,
            "reason": entry.reason.value,
            "message_id": entry.message_id,
            "detail": entry.detail,
            "created_at": entry.created_at,
        }
        statement = self._insert(suppressions).values(**values)
        statement = statement.on_conflict_do_update(
            index_elements=["address"],
            set_={k: statement.excluded[k] for k in values if k != "address"},
        )
        async with self.db.write() as tx:
            await tx.run(statement)
        return dataclasses.replace(entry, address=address)

    async def unsuppress(self, address: str) -> bool:
        """Remove an address from the list; whether it was on it."""
        async with self.db.write() as tx:
            removed = await tx.run(
                delete(suppressions).where(suppressions.c.address == normalise_address(address))
            )
        return removed > 0

    async def unsubscribe(self, *, address: str, message_id: str, now: datetime) -> None:
        """A recipient's one-click unsubscribe from a message: suppressed with reason
        `unsubscribe` (an earlier suppression is kept as it was) and, if the message is
        still stored, an email.unsubscribed event, in one transaction.

        A repeated click (mail clients retry, people click twice) publishes nothing more
        while the address stays suppressed: the message's row, locked first, makes
        clicks on one link wait for each other."""
        key = normalise_address(address)
        statement = self._insert(suppressions).values(
            address=key,
            reason=SuppressionReason.UNSUBSCRIBE.value,
            message_id=message_id,
            detail="one-click unsubscribe",
            created_at=now,
        )
        async with self.db.write() as tx:
            email_id = await tx.scalar(
                select(emails.c.id).where(emails.c.message_id == message_id).with_for_update()
            )
            added = await tx.run(statement.on_conflict_do_nothing(index_elements=["address"]))
            if email_id is None or (not added and await _unsubscribed(tx, email_id, address)):
                return
            event = {
                "email_id": email_id,
                "at": now,
                "kind": "unsubscribed",
                "type": EventType.EMAIL_UNSUBSCRIBED.value,
                "recipient": address,
                "webhook_pending": True,
            }
            await tx.run(email_events.insert(), [event])


async def _unsubscribed(tx: Tx, email_id: int, address: str) -> bool:
    """Whether this recipient's unsubscribe from this message is already published."""
    found = await tx.scalar(
        select(email_events.c.id)
        .where(
            email_events.c.email_id == email_id,
            email_events.c.type == EventType.EMAIL_UNSUBSCRIBED.value,
            email_events.c.recipient == address,
        )
        .limit(1)
    )
    return found is not None


def published(row: Row) -> PublishedEvent:
    """An event row joined with its message, as GET /events and webhooks show it."""
    event = event_of(row)
    if row["message_id"] is None:
        return PublishedEvent(event=event)
    recipients = dict.fromkeys([*row["to_addrs"], *row["cc_addrs"], *row["bcc_addrs"]])
    return PublishedEvent(
        event=event,
        message_id=row["message_id"],
        client_message_id=row["client_message_id"],
        recipients=tuple(recipients),
        tags=tuple(row["tags"]),
        metadata=dict(row["meta"]),
    )


def _event_conditions(query: EventFilter) -> list[Any]:
    conditions: list[Any] = [email_events.c.type.is_not(None)]
    if query.type is not None:
        conditions.append(email_events.c.type == query.type)
    if query.message_id is not None:
        conditions.append(emails.c.message_id == query.message_id)
    if query.recipient is not None:
        address = query.recipient.lower()
        pattern = json_element(address)
        conditions.append(
            or_(
                func.lower(email_events.c.recipient) == address,
                (email_events.c.recipient.is_(None))
                & or_(
                    *(
                        func.lower(json_text(column)).like(pattern, escape="\\")
                        for column in (emails.c.to_addrs, emails.c.cc_addrs, emails.c.bcc_addrs)
                    )
                ),
            )
        )
    if query.after is not None:
        conditions.append(email_events.c.at >= query.after)
    if query.before is not None:
        conditions.append(email_events.c.at < query.before)
    return conditions


def _suppression(row: Row) -> Suppression:
    return Suppression(
        address=row["address"],
        reason=SuppressionReason(row["reason"]),
        created_at=row["created_at"],
        message_id=row["message_id"],
        detail=row["detail"],
    )
