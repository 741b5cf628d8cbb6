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
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from odiseo.domain.events import EventType
from odiseo.domain.limits import RateLimit
from odiseo.domain.models import Status
from odiseo.domain.operations import (
    LimitUse,
    UiSession,
    WorkerSeen,
    failure_reason,
    recipient_domain,
)
from odiseo.domain.throttle import Scope, Throttle
from odiseo.domain.webhooks import Endpoint
from odiseo.storage.contract import Store

Counts = dict[str, int]  # events per charted type in one span
CHARTED = (EventType.EMAIL_SENT, EventType.EMAIL_FAILED, EventType.EMAIL_DEFERRED)
SETTLED = timedelta(minutes=5)  # after a span's end, no event of it is written any more
MINUTES_KEPT = 120  # the per-minute counts at hand: the last hour's chart and the hour before
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
        self.activity = Activity(store)

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
            self.activity.charts(now=now),
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


class Activity:
    """The overview's charts at a cost that follows the events of a few minutes, not of
    the day: per minute over the last hour, per hour over the last day.

    A minute SETTLED after its end is read for the last time and kept: events are
    written when they happen (an attempt's outcome as its worker records it), so none
    arrives for it later. Each view reads, per minute, only the minutes not kept yet
    (the last few, in steady state). An hour is summed from its minutes while those are
    kept (the last two hours) and kept itself once settled; the hours before that are
    read once per process, per hour (the first view after a start reads the day).
    Each API process keeps its own, a few hundred small dicts.
    """

    def __init__(self, store: Store) -> None:
        self.store = store
        self._minutes: dict[int, Counts] = {}  # settled minutes, by minute since 1970
        self._hours: dict[int, Counts] = {}  # settled hours, by hour since 1970

    async def charts(self, *, now: datetime) -> tuple[Series, Series]:
        epoch = now.timestamp()
        settled = int(epoch - SETTLED.total_seconds()) // 60  # the minutes before it are
        current = int(epoch) // 60
        first = current - MINUTES_KEPT + 1
        unread = next((m for m in range(first, current) if m not in self._minutes), current)
        fresh = await self._read(since=unread * 60, until=None, span_seconds=60, tz=now)
        minutes = {m: fresh.get(m, self._minutes.get(m, {})) for m in range(first, current + 1)}
        self._minutes = {m: c for m, c in minutes.items() if m < settled}
        hour = int(epoch) // 3600
        hours: dict[int, Counts] = {}
        for h in range(hour - 23, hour + 1):
            if h * 60 >= first:  # its minutes are at hand
                hours[h] = _sum(minutes.get(m, {}) for m in range(h * 60, h * 60 + 60))
            elif h in self._hours:
                hours[h] = self._hours[h]
        missing = [h for h in range(hour - 23, hour + 1) if h not in hours]
        if missing:
            since, until = missing[0] * 3600, (missing[-1] + 1) * 3600  # settled, all
            found = await self._read(since=since, until=until, span_seconds=3600, tz=now)
            hours |= {h: found.get(h, {}) for h in missing}
        self._hours = {h: c for h, c in hours.items() if (h + 1) * 60 <= settled}
        return (
            _series(minutes, numbers=range(current - 59, current + 1), span_seconds=60, tz=now),
            _series(hours, numbers=range(hour - 23, hour + 1), span_seconds=3600, tz=now),
        )

    async def _read(
        self, *, since: int, until: int | None, span_seconds: int, tz: datetime
    ) -> dict[int, Counts]:
        """The charted events from `since` (to `until`), epoch seconds, per span."""
        found = await self.store.operations.activity(
            CHARTED,
            since=datetime.fromtimestamp(since, tz.tzinfo),
            until=None if until is None else datetime.fromtimestamp(until, tz.tzinfo),
            span_seconds=span_seconds,
        )
        spans: dict[int, Counts] = {}
        for count in found:
            number = int(count.start.timestamp()) // span_seconds
            counts = spans.setdefault(number, {})
            counts[count.type] = counts.get(count.type, 0) + count.count
        return spans


def _sum(spans: Iterable[Counts]) -> Counts:
    total: Counter[str] = Counter()
    for counts in spans:
        total.update(counts)
    return dict(total)


def _series(spans: dict[int, Counts], *, numbers: range, span_seconds: int, tz: datetime) -> Series:
    return Series(
        span_seconds=span_seconds,
        starts=tuple(datetime.fromtimestamp(n * span_seconds, tz.tzinfo) for n in numbers),
        counts={t.value: tuple(spans.get(n, {}).get(t.value, 0) for n in numbers) for t in CHARTED},
    )


def _session_id(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
