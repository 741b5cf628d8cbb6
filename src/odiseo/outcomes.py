"""Use cases about what became of messages: the event log and the suppression list.

Shared by the API, the CLI and (later) the SMTP listener and the dashboard, beside
`service.EmailService`, which turns requests into stored messages.
"""

from __future__ import annotations

import dataclasses
import logging
from datetime import datetime

from odiseo.domain.bounces import normalise_address
from odiseo.domain.models import (
    EventFilter,
    PublishedEvent,
    Suppression,
    SuppressionReason,
)
from odiseo.errors import NotFound
from odiseo.mime import ascii_address
from odiseo.storage.contract import Store

log = logging.getLogger(__name__)


def listed_as(address: str) -> str:
    """The key an address is listed and its mail stored under: an international
    domain in its xn-- form (as the API stores recipients), trimmed and lower-cased,
    whichever form it is given in. What is no address is looked up as it is."""
    try:
        return normalise_address(ascii_address(address.strip()))
    except ValueError:
        return normalise_address(address)


class OutcomeService:
    """Reads events; keeps the suppression list."""

    def __init__(self, store: Store) -> None:
        self.outcomes = store.outcomes

    async def events(
        self, query: EventFilter, *, limit: int, before: int | None
    ) -> tuple[list[PublishedEvent], int | None]:
        """A page of published events, newest first, and the id to continue below."""
        if query.recipient is not None:
            query = dataclasses.replace(query, recipient=listed_as(query.recipient))
        return await self.outcomes.events(query, limit=limit, before=before)

    async def suppression(self, address: str) -> Suppression:
        """Why an address is suppressed; raises NotFound when it is not."""
        found = await self.outcomes.suppression(listed_as(address))
        if found is None:
            raise NotFound(f"{listed_as(address)} is not suppressed")
        return found

    async def suppressions(
        self,
        *,
        search: str | None,
        reason: SuppressionReason | None,
        limit: int,
        after: str | None,
    ) -> tuple[list[Suppression], str | None]:
        return await self.outcomes.suppressions(
            search=search, reason=reason, limit=limit, after=after
        )

    async def suppress(
        self, address: str, *, reason: SuppressionReason, detail: str | None, now: datetime
    ) -> Suppression:
        """Add an address to the list (or change why it is there)."""
        entry = Suppression(address=address, reason=reason, created_at=now, detail=detail)
        stored = await self.outcomes.suppress(entry)
        log.info("an address was suppressed by hand (%s)", reason.value)
        return stored

    async def unsuppress(self, address: str) -> str:
        """Let mail go to an address again, by its key (which it returns); raises
        NotFound if it was not suppressed."""
        key = listed_as(address)
        if not await self.outcomes.unsuppress(key):
            raise NotFound(f"{key} is not suppressed")
        log.info("a suppression was removed")
        return key

    async def unsubscribe(self, *, address: str, message_id: str, now: datetime) -> None:
        """A recipient's one-click unsubscribe: suppressed, with an event."""
        await self.outcomes.unsubscribe(address=address, message_id=message_id, now=now)
        log.info("a recipient unsubscribed", extra={"message_id": message_id})
