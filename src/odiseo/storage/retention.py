"""Retention and data protection: purging old finished messages, erasing an address,
and the audit log of admin actions. Written once in SQLAlchemy Core for both engines.

A purge deletes a few hundred messages per transaction (their events, attachments
and webhook deliveries go with them by ON DELETE CASCADE), so it never holds a long
lock; it only ever takes finished messages.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, or_, select, update

from odiseo.domain.bounces import normalise_address
from odiseo.domain.lifecycle import FINISHED
from odiseo.domain.models import AuditEntry, Erased
from odiseo.storage.database import Database
from odiseo.storage.search import json_element, json_text
from odiseo.storage.tables import audit_log, email_events, emails, suppressions

_FINISHED = sorted(status.value for status in FINISHED)


class RetentionStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def purge(self, *, before: datetime, limit: int) -> int:
        """Delete up to `limit` finished messages last changed before `before`; how many."""
        async with self.db.write() as tx:
            ids = [
                r["id"]
                for r in await tx.rows(
                    select(emails.c.id)
                    .where(emails.c.status.in_(_FINISHED), emails.c.updated_at < before)
                    .order_by(emails.c.id)
                    .limit(limit)
                )
            ]
            if ids:
                await tx.run(delete(emails).where(emails.c.id.in_(ids)))
        return len(ids)

    async def purgeable(self, *, before: datetime) -> int:
        """How many messages a purge with `before` would delete (`odiseo purge --dry-run`)."""
        async with self.db.read() as tx:
            return int(
                await tx.scalar(
                    select(func.count()).where(
                        emails.c.status.in_(_FINISHED), emails.c.updated_at < before
                    )
                )
            )

    async def erase(self, address: str) -> Erased:
        """Everything stored about an address: the messages that name it (whole, with
        their events and files), events about it, its suppression, and its name in
        the audit log — in one transaction."""
        key = normalise_address(address)
        pattern = json_element(key)
        named = or_(
            *(
                func.lower(json_text(column)).like(pattern, escape="\\")
                for column in (emails.c.to_addrs, emails.c.cc_addrs, emails.c.bcc_addrs)
            ),
        )
        async with self.db.write() as tx:
            messages = await tx.run(delete(emails).where(named))
            events = await tx.run(
                delete(email_events).where(func.lower(email_events.c.recipient) == key)
            )
            suppressed = await tx.run(delete(suppressions).where(suppressions.c.address == key))
            await tx.run(
                update(audit_log)
                .where(func.lower(audit_log.c.target).contains(key, autoescape=True))
                .values(target="[erased]")
            )
        return Erased(messages=messages, events=events, suppression=suppressed > 0)

    async def audit(
        self, *, at: datetime, actor: str, action: str, target: str, status_code: int
    ) -> None:
        """Note an admin action."""
        async with self.db.write() as tx:
            await tx.run(
                audit_log.insert(),
                [
                    {
                        "at": at,
                        "actor": actor,
                        "action": action,
                        "target": target,
                        "status_code": status_code,
                    }
                ],
            )

    async def audit_entries(
        self, *, limit: int, before: int | None
    ) -> tuple[list[AuditEntry], int | None]:
        """The audit log, newest first, below the id `before`."""
        conditions: list[Any] = [] if before is None else [audit_log.c.id < before]
        async with self.db.read() as tx:
            rows = await tx.rows(
                select(audit_log)
                .where(*conditions)
                .order_by(audit_log.c.id.desc())
                .limit(limit + 1)
            )
        page = [AuditEntry(**dict(r)) for r in rows[:limit]]
        return page, (page[-1].id if len(rows) > limit else None)
