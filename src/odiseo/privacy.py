"""Data protection: erasing what is stored about an address, the audit log of admin
actions, and purging by hand (`odiseo purge`)."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from odiseo.domain.models import AuditEntry, Erased
from odiseo.storage.contract import Store

log = logging.getLogger(__name__)


class PrivacyService:
    def __init__(self, store: Store) -> None:
        self.retention = store.retention

    async def erase(self, address: str) -> Erased:
        """Everything stored about an address, gone (GDPR article 17 requests)."""
        erased = await self.retention.erase(address)
        log.info(
            "erased an address: %d messages, %d events, suppression %s",
            erased.messages,
            erased.events,
            "removed" if erased.suppression else "none",
        )
        return erased

    async def audit(
        self, *, actor: str, action: str, target: str, status_code: int, now: datetime
    ) -> None:
        await self.retention.audit(
            at=now, actor=actor, action=action, target=target, status_code=status_code
        )

    async def audit_entries(
        self, *, limit: int, before: int | None
    ) -> tuple[list[AuditEntry], int | None]:
        return await self.retention.audit_entries(limit=limit, before=before)

    async def purge(self, *, days: int, now: datetime, dry_run: bool) -> int:
        """Delete (or, dry, count) the finished messages older than `days` days."""
        before = now - timedelta(days=days)
        if dry_run:
            return await self.retention.purgeable(before=before)
        total = 0
        while purged := await self.retention.purge(before=before, limit=500):
            total += purged
        return total
