"""Use cases of webhook endpoints: create, read, change, rotate, test; the delivery log
and replays. The API's routes call these; the store is seen through its contract.

A URL is checked here before it is stored (ssrf.py); the sender checks it again at
every delivery. A secret leaves this module only in the answer to the create or
rotate call that made it, and is never logged.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from odiseo.domain.webhooks import SECRET_OVERLAP, Delivery, Endpoint
from odiseo.errors import NotFound, WebhookRefused
from odiseo.storage.contract import Webhooks
from odiseo.webhooks import signing, ssrf

log = logging.getLogger(__name__)

RESOLVE_SECONDS = 10.0  # a save waits this long for DNS at most


def new_endpoint_id() -> str:
    return "wh_" + uuid.uuid4().hex


class WebhookService:
    """What the API does with webhooks."""

    def __init__(
        self,
        *,
        store: Webhooks,
        allow_private: bool,
        resolver: ssrf.Resolver = ssrf.system_resolver,
    ) -> None:
        self.store = store
        self.allow_private = allow_private
        self.resolver = resolver

    async def check_url(self, url: str) -> str:
        """The URL as it will be stored, if it may be; raises WebhookRefused."""
        if self.allow_private:  # every address is allowed: only the form is checked
            return str(ssrf.parse(url, allow_private=True))
        try:
            async with asyncio.timeout(RESOLVE_SECONDS):
                target = await ssrf.check(url, allow_private=False, resolver=self.resolver)
        except TimeoutError:
            raise WebhookRefused("url: its name did not resolve in time") from None
        return str(target.url)

    async def create(
        self, *, url: str, events: Sequence[str], description: str | None, now: datetime
    ) -> tuple[Endpoint, str]:
        """A new enabled endpoint and its signing secret (shown once)."""
        checked = await self.check_url(url)
        secret = signing.new_secret()
        created = await self.store.create(
            new_endpoint_id(),
            url=checked,
            description=description,
            events=events,
            secret=secret,
            now=now,
        )
        log.info("webhook endpoint %s created for %s", created.id, created.url)
        return created, secret

    async def endpoints(self) -> list[Endpoint]:
        return await self.store.endpoints()

    async def get(self, endpoint_id: str) -> Endpoint:
        found = await self.store.get(endpoint_id)
        if found is None:
            raise NotFound(f"no webhook endpoint {endpoint_id!r}")
        return found

    async def update(self, endpoint_id: str, *, changes: dict[str, Any], now: datetime) -> Endpoint:
        """Change url, description, events or enabled (a new URL is checked first)."""
        if changes.get("url") is not None:
            changes = {**changes, "url": await self.check_url(changes["url"])}
        if not changes:
            return await self.get(endpoint_id)
        updated = await self.store.update(endpoint_id, changes=changes, now=now)
        log.info("webhook endpoint %s changed: %s", endpoint_id, ", ".join(sorted(changes)))
        return updated

    async def delete(self, endpoint_id: str) -> None:
        if not await self.store.delete(endpoint_id):
            raise NotFound(f"no webhook endpoint {endpoint_id!r}")
        log.info("webhook endpoint %s deleted", endpoint_id)

    async def rotate(self, endpoint_id: str, *, now: datetime) -> tuple[Endpoint, str]:
        """A new secret (shown once); the old one keeps signing for SECRET_OVERLAP."""
        secret = signing.new_secret()
        rotated = await self.store.rotate(
            endpoint_id, secret=secret, overlap=SECRET_OVERLAP, now=now
        )
        log.info("webhook endpoint %s: secret rotated", endpoint_id)
        return rotated, secret

    async def send_test(self, endpoint_id: str, *, now: datetime) -> Delivery:
        return await self.store.send_test(endpoint_id, now=now)

    async def deliveries(
        self, endpoint_id: str, *, limit: int, before: int | None
    ) -> tuple[list[Delivery], int | None]:
        await self.get(endpoint_id)  # NotFound for an unknown endpoint, not an empty page
        return await self.store.deliveries(endpoint_id, limit=limit, before=before)

    async def replay(self, endpoint_id: str, delivery_id: int, *, now: datetime) -> Delivery:
        replayed = await self.store.replay(endpoint_id, delivery_id, now=now)
        log.info("webhook endpoint %s: delivery %d replayed", endpoint_id, delivery_id)
        return replayed

    async def replay_failed(self, endpoint_id: str, *, since: datetime, now: datetime) -> int:
        await self.get(endpoint_id)
        count = await self.store.replay_failed(endpoint_id, since=since, now=now)
        log.info("webhook endpoint %s: %d failed deliveries replayed", endpoint_id, count)
        return count

    async def oldest_pending_seconds(self, *, now: datetime) -> float:
        return await self.store.oldest_pending_seconds(now=now)
