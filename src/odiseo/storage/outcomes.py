"""What became of messages: the published events, and the suppression list.

Written once in SQLAlchemy Core for both engines, like the other rarely called verbs.
The hot paths that write events and suppressions (recording an attempt) live in each
engine's record statement; this module reads them and serves an operator's changes.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, or_, select, text
from sqlalchemy.dialects import postgresql, sqlite

from odiseo.domain.bounces import Notice, NoticeKind, Returned, normalise_address, reply_code
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
from odiseo.storage.tables import (
    FOREIGN_RFC_MESSAGE_ID,
    email_events,
    emails,
    suppressions,
)

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

    # -- mail that came back (bounces, complaints, relay reports) --------------------

    async def record_returned(self, returned: Returned, *, now: datetime) -> str | None:
        """What came back about a message: an event per notice (email.bounced,
        email.delayed, email.complained) and, for a bad address or a complaint, the
        recipient's suppression (an earlier one is kept), in one transaction. The
        message's id, or None when no message matches (nothing is written)."""
        async with self.db.write() as tx:
            row = await _returned_to(tx, returned)
            if row is None:
                return None
            events, barred = _returned_rows(row, returned.notices, now=now)
            await tx.run(email_events.insert(), events)
            if barred:
                statement = self._insert(suppressions).on_conflict_do_nothing(
                    index_elements=["address"]
                )
                await tx.run(statement, barred)
        return str(row["message_id"])

    async def keep_unparsed(
        self, *, data: dict[str, Any], message_id: str | None, now: datetime
    ) -> int:
        """An inbound.unparsed event holding what came back (`data`), about the message
        `message_id` if it is known and stored; its id."""
        async with self.db.write() as tx:
            email_id = None
            if message_id is not None:
                email_id = await tx.scalar(
                    select(emails.c.id).where(emails.c.message_id == message_id)
                )
            row = {
                "email_id": email_id,
                "at": now,
                "kind": "unparsed",
                "type": EventType.INBOUND_UNPARSED.value,
                "data": data,
                "webhook_pending": True,
            }
            return int(
                await tx.scalar(email_events.insert().values(**row).returning(email_events.c.id))
            )


_RETURNED_COLUMNS = (
    emails.c.id,
    emails.c.message_id,
    emails.c.to_addrs,
    emails.c.cc_addrs,
    emails.c.bcc_addrs,
)
_RFC_MESSAGE_ID_LENGTH = 255  # tables.emails.rfc_message_id
_OWN_RFC_MESSAGE_ID = re.compile(
    r"<([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})@[^<>\s]+>"
)
_EVENT_OF_NOTICE = {
    NoticeKind.BOUNCED: EventType.EMAIL_BOUNCED,
    NoticeKind.DELAYED: EventType.EMAIL_DELAYED,
    NoticeKind.COMPLAINED: EventType.EMAIL_COMPLAINED,
}


async def _returned_to(tx: Tx, returned: Returned) -> Row | None:
    """The message mail came back about: by our id (VERP), the relay's id, or the
    Message-ID it quotes (ours by the id inside it, an application's by the index)."""
    found = select(*_RETURNED_COLUMNS)
    if returned.message_id is not None:
        return await tx.first(found.where(emails.c.message_id == returned.message_id))
    if returned.relay_message_id is not None:
        row = await tx.first(found.where(emails.c.relay_message_id == returned.relay_message_id))
        if row is not None:
            return row
    quoted = returned.rfc_message_id
    if quoted is None or len(quoted) > _RFC_MESSAGE_ID_LENGTH:
        return None
    own = _OWN_RFC_MESSAGE_ID.fullmatch(quoted)
    same = emails.c.rfc_message_id == quoted
    if own is not None:
        return await tx.first(found.where(emails.c.message_id == own.group(1), same))
    return await tx.first(found.where(text(FOREIGN_RFC_MESSAGE_ID), same))


def _returned_rows(
    row: Row, notices: Sequence[Notice], *, now: datetime
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The events and suppressions of `notices` about the message `row`.

    A notice's recipient must be one of the message's; one it does not name (a
    redacted complaint, an address forwarded on) is the message's own recipient when
    it has only one, else it is recorded as reported and suppresses nobody.
    """
    recipients = {
        normalise_address(a): a for a in [*row["to_addrs"], *row["cc_addrs"], *row["bcc_addrs"]]
    }
    events, barred = [], []
    for notice in notices:
        reported = notice.recipient
        recipient = recipients.get(normalise_address(reported or ""))
        if recipient is None and len(recipients) == 1:
            (recipient,) = recipients.values()
        suppress = notice.suppress and recipient is not None
        data: dict[str, Any] = {"source": notice.source, "status": notice.status}
        data |= notice.detail | {"suppressed": suppress}
        if reported is not None and recipient != reported:
            data["reported_recipient"] = reported
        events.append(
            {
                "email_id": row["id"],
                "at": now,
                "kind": notice.kind.value,
                "type": _EVENT_OF_NOTICE[notice.kind].value,
                "recipient": recipient or reported,
                "smtp_code": reply_code(notice.diagnostic),
                "response": notice.diagnostic or notice.status,
                "data": data,
                "webhook_pending": True,
            }
        )
        if suppress and recipient is not None:
            complaint = notice.kind is NoticeKind.COMPLAINED
            reason = SuppressionReason.COMPLAINT if complaint else SuppressionReason.HARD_BOUNCE
            barred.append(
                {
                    "address": normalise_address(recipient),
                    "reason": reason.value,
                    "message_id": row["message_id"],
                    "detail": _suppression_detail(notice),
                    "created_at": now,
                }
            )
    return events, barred


def _suppression_detail(notice: Notice) -> str:
    if notice.kind is NoticeKind.COMPLAINED:
        feedback = notice.detail.get("feedback_type", "abuse")
        return f"complaint ({feedback}) reported through {notice.source}"
    return f"{notice.source}: {notice.diagnostic or notice.status or 'permanent failure'}"


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
