"""Housekeeping beside each worker: the purge of RETENTION_DAYS.

Every few minutes each worker deletes the finished messages older than the retention
period, a few hundred per transaction with a pause between them, so a purge never
holds a long lock or starves delivery; several workers purging at once only share
the work. `odiseo purge` runs the same purge once, by hand.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from odiseo.errors import StoreUnavailable
from odiseo.storage.contract import Retention

log = logging.getLogger(__name__)

BATCH = 500  # messages per purge transaction
PAUSE_SECONDS = 0.05  # between two batches: let delivery's statements through


class Housekeeper:
    """Purges what RETENTION_DAYS lets go, until stopped."""

    def __init__(
        self,
        *,
        retention: Retention,
        days: int,
        clock: Callable[[], datetime],
        interval: float = 300.0,
    ) -> None:
        self.retention = retention
        self.keep = timedelta(days=days)
        self.clock = clock
        self.interval = interval
        self._stop = asyncio.Event()

    def stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        while not self._stop.is_set():
            try:
                purged = await self.purge()
                if purged:
                    log.info("purged %d finished messages older than %s", purged, self.keep)
            except StoreUnavailable as exc:
                log.warning("cannot purge now: %s", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.interval)

    async def purge(self) -> int:
        """Delete every finished message older than the retention period, in batches;
        how many (stops early when asked to stop)."""
        before = self.clock() - self.keep
        total = 0
        while not self._stop.is_set():
            purged = await self.retention.purge(before=before, limit=BATCH)
            total += purged
            if purged < BATCH:
                break
            await asyncio.sleep(PAUSE_SECONDS)
        return total
