"""The /health verdict: the store on every probe, the provider at most every 30 s."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from odiseo.errors import OdiseoError, StoreUnavailable
from odiseo.providers.base import Provider
from odiseo.storage.contract import Store

log = logging.getLogger(__name__)

DB_TIMEOUT_SECONDS = 3.0
PROVIDER_TTL_SECONDS = 30.0
PROVIDER_WAIT_SECONDS = 3.0


class HealthCheck:
    """Answers probes without letting them hammer the SMTP server."""

    def __init__(self, *, store: Store, provider: Provider) -> None:
        self.store = store
        self.provider = provider
        self._provider_state: str | None = None
        self._checked_at = float("-inf")
        self._check: asyncio.Task[None] | None = None

    async def db(self) -> str:
        try:
            await asyncio.wait_for(self.store.ping(), DB_TIMEOUT_SECONDS)
        except (StoreUnavailable, TimeoutError):
            return "unreachable"
        return "ok"

    async def email_provider(self) -> str:
        stale = time.monotonic() - self._checked_at >= PROVIDER_TTL_SECONDS
        if stale and (self._check is None or self._check.done()):
            self._check = asyncio.create_task(self._run_check())
        if self._provider_state is None and self._check is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._check), PROVIDER_WAIT_SECONDS)
        return self._provider_state or "unknown"

    async def _run_check(self) -> None:
        try:
            await self.provider.check()
            state = "ok"
        except OdiseoError as exc:
            log.warning("email provider check failed: %s", exc)
            state = "unreachable"
        self._provider_state = state
        self._checked_at = time.monotonic()

    async def close(self) -> None:
        if self._check is not None and not self._check.done():
            self._check.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._check
