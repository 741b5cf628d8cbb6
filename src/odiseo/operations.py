"""Use cases of the dashboard that are not about one message: its sign-ins and the
overview of the running service (queue, activity, failures, workers, webhooks).

Sign-in tokens are made and checked here: the cookie carries a random token, the
store keeps only its SHA-256, so a copy of the database opens no session.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from odiseo.domain.events import EventType
from odiseo.domain.limits import RateLimit
from odiseo.domain.models import Status
from odiseo.domain.operations import (
    ActivityCount,
    LimitUse,
    UiSession,
    WorkerSeen,
    failure_reason,
    recipient_domain,
)
from odiseo.domain.throttle import Scope, Throttle
from odiseo.domain.webhooks import Endpoint
from odiseo.storage.contract import Store

CHARTED = (EventType.EMAIL_SENT, EventType.EMAIL_FAILED, EventType.EMAIL_DEFERRED)
FAILURES_READ = 1000  # the newest failures of the day grouped on the overview
GROUPS_SHOWN = 8


@dataclass(frozen=True, kw_only=True)
class Series:
    """Counts of each charted event type per span, oldest span first."""

    span_seconds: int
    starts: tuple[datetime, ...]
    counts: dict[str, tuple[int, ...]]


@dataclass(frozen=True, kw_only=True)
class Overview:
    """Everything the dashboard's first page shows, read at `now`."""

    now: datetime
    counts: dict[Status, int]
    oldest_due_seconds: float
    last_hour: Series
    last_day: Series
    failures_read: int
    by_reason: list[tuple[str, int]]
    by_domain: list[tuple[str, int]]
    workers: list[WorkerSeen]
    endpoints: list[Endpoint]
    webhook_oldest_pending_seconds: float
    limits: list[LimitUse]  # SMTP_MAX_PER_* and DOMAIN_LIMITS, in their current windows
    throttles: list[Throttle]  # the scopes a throttle reply slowed: paused or recovering


class OperationsService:
    def __init__(self, store: Store, *, limits: Sequence[RateLimit] = ()) -> None:
        self.store = store
        self.limits = tuple(limits)  # the sending limits configured, shown on the overview

    # -- sign-ins --------------------------------------------------------------------

    async def open_session(
        self, *, key_id: str | None, lasting: timedelta, now: datetime
    ) -> tuple[str, UiSession]:
        """A new sign-in: the token for the cookie, and the session kept for it."""
        token = secrets.token_urlsafe(32)
        session = UiSession(
            id=_session_id(token),
            key_id=key_id,
            csrf=secrets.token_urlsafe(32),
            created_at=now,
            expires_at=now + lasting,
        )
        await self.store.operations.open_session(session, now=now)
        return token, session

    async def session(self, token: str, *, now: datetime) -> UiSession | None:
        """The unexpired sign-in a cookie's token belongs to."""
        if not token or len(token) > 100:
            return None
        return await self.store.operations.session(_session_id(token), now=now)

    async def close_session(self, token: str) -> None:
        await self.store.operations.close_session(_session_id(token))

    # -- the overview ------------------------------------------------------------------

    async def overview(
        self, *, now: datetime, endpoints: list[Endpoint], webhook_wait: float
    ) -> Overview:
        """The overview at `now`; webhook endpoints come from the webhook service."""
        ops = self.store.operations
        counts, oldest, (hour, day), failures, workers, (limits, throttles) = await asyncio.gather(
            self.store.counts(),  # one page view, its queries at once
            self.store.oldest_due_seconds(now=now),
            self._activity(now=now),
            ops.failures(since=now - timedelta(days=1), limit=FAILURES_READ),
            ops.workers(),
            self._sending(now=now),
        )
        reasons = Counter(failure_reason(f.smtp_code, f.response) for f in failures)
        domains = Counter(recipient_domain(a) for f in failures for a in dict.fromkeys(f.to))
        return Overview(
            now=now,
            counts=counts,
            oldest_due_seconds=oldest,
            last_hour=hour,
            last_day=day,
            failures_read=len(failures),
            by_reason=reasons.most_common(GROUPS_SHOWN),
            by_domain=domains.most_common(GROUPS_SHOWN),
            workers=workers,
            endpoints=endpoints,
            webhook_oldest_pending_seconds=webhook_wait,
            limits=limits,
            throttles=throttles,
        )

    async def _sending(self, *, now: datetime) -> tuple[list[LimitUse], list[Throttle]]:
        """The sending limits' use in their current windows, and the throttled scopes
        (the relay first, then domains by name)."""
        used, throttles = await asyncio.gather(
            self.store.limits.usage(self.limits, now=now), self.store.limits.throttles(now=now)
        )
        limits = [
            LimitUse(
                label=limit.label,
                used=used[limit.name],
                count=limit.count,
                resets_at=limit.next_window(now),
            )
            for limit in self.limits
        ]
        return limits, sorted(throttles, key=lambda t: (t.scope is not Scope.RELAY, t.domain))

    async def _activity(self, *, now: datetime) -> tuple[Series, Series]:
        """Per minute over the last hour, per hour over the last day."""
        return await asyncio.gather(
            self._series(now=now, spans=60, span_seconds=60),
            self._series(now=now, spans=24, span_seconds=3600),
        )

    async def _series(self, *, now: datetime, spans: int, span_seconds: int) -> Series:
        """The charted events in the last `spans` spans (the current one included)."""
        current = int(now.timestamp()) // span_seconds
        first = current - spans + 1
        since = datetime.fromtimestamp(first * span_seconds, now.tzinfo)
        found = await self.store.operations.activity(
            CHARTED, since=since, span_seconds=span_seconds
        )
        return _series(found, first=first, spans=spans, span_seconds=span_seconds, tz=now)


def _series(
    found: list[ActivityCount], *, first: int, spans: int, span_seconds: int, tz: datetime
) -> Series:
    table = {(c.type, int(c.start.timestamp()) // span_seconds): c.count for c in found}
    numbers = range(first, first + spans)
    return Series(
        span_seconds=span_seconds,
        starts=tuple(datetime.fromtimestamp(n * span_seconds, tz.tzinfo) for n in numbers),
        counts={t.value: tuple(table.get((t.value, n), 0) for n in numbers) for t in CHARTED},
    )


def _session_id(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
