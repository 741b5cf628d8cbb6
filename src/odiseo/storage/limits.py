"""Sending limits shared by every worker: one usage row per limit, in the database.

A worker takes tokens for a whole batch in one short transaction (rows locked, FOR
UPDATE on PostgreSQL, BEGIN IMMEDIATE on SQLite), so the rows are touched once per
claim, never per message; unused tokens are given back to the same windows.
Adaptive throttling's back-off (domain/throttle.py) lives beside them, one `throttles`
row per scope, read by the workers at most once a second and written only when a reply
asks to slow down. Written once in SQLAlchemy Core for both engines.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite

from odiseo.domain.events import EventType
from odiseo.domain.limits import Grant, RateLimit
from odiseo.domain.throttle import Policy, Scope, Signal, Throttle, after_signal
from odiseo.storage.database import Database, Row
from odiseo.storage.tables import email_events, send_usage, throttles

_NEVER = datetime(1970, 1, 1, tzinfo=UTC)
_EVENT = {Scope.RELAY: EventType.RELAY_THROTTLED, Scope.DOMAIN: EventType.DOMAIN_THROTTLED}


class LimitStore:
    def __init__(self, db: Database, *, dialect: str) -> None:
        self.db = db
        self._insert = postgresql.insert if dialect == "postgresql" else sqlite.insert

    async def take(self, limits: Sequence[RateLimit], *, want: int, now: datetime) -> Grant:
        """Up to `want` tokens from the current window of every limit at once."""
        names = [limit.name for limit in limits]
        blank = [{"name": n, "window_start": 0, "used": 0} for n in names]
        async with self.db.write() as tx:
            await tx.run(self._insert(send_usage).on_conflict_do_nothing(), blank)
            rows = await tx.rows(
                select(send_usage)
                .where(send_usage.c.name.in_(names))
                .order_by(send_usage.c.name)
                .with_for_update()
            )
            usage = {r["name"]: r for r in rows}
            left = {
                limit.name: limit.count
                - (
                    usage[limit.name]["used"]
                    if usage[limit.name]["window_start"] == limit.window(now)
                    else 0
                )
                for limit in limits
            }
            granted = max(0, min(want, *left.values()))
            if granted == 0:
                full = [limit for limit in limits if left[limit.name] <= 0]
                return Grant(count=0, retry_at=min(limit.next_window(now) for limit in full))
            windows = tuple((limit.name, limit.window(now)) for limit in limits)
            for limit in limits:
                start = limit.window(now)
                used = limit.count - left[limit.name] + granted
                await tx.run(
                    update(send_usage)
                    .where(send_usage.c.name == limit.name)
                    .values(window_start=start, used=used)
                )
        return Grant(count=granted, windows=windows)

    async def exhausted(self, limits: Sequence[RateLimit], *, now: datetime) -> list[str]:
        """The names of the limits whose current window is used up."""
        used = await self.usage(limits, now=now)
        return [limit.name for limit in limits if used[limit.name] >= limit.count]

    async def usage(self, limits: Sequence[RateLimit], *, now: datetime) -> dict[str, int]:
        """The tokens taken so far from the current window of each limit, by name."""
        if not limits:
            return {}
        async with self.db.read() as tx:
            rows = await tx.rows(
                select(send_usage).where(send_usage.c.name.in_([limit.name for limit in limits]))
            )
        found = {r["name"]: r for r in rows}
        return {
            limit.name: row["used"]
            if (row := found.get(limit.name)) is not None
            and row["window_start"] == limit.window(now)
            else 0
            for limit in limits
        }

    async def give_back(self, grant: Grant, count: int) -> None:
        """Return `count` unused tokens of `grant` to the windows they came from (if those
        windows are still current)."""
        if count <= 0:
            return
        async with self.db.write() as tx:
            for name, start in grant.windows:
                await tx.run(
                    update(send_usage)
                    .where(send_usage.c.name == name, send_usage.c.window_start == start)
                    .values(used=send_usage.c.used - count)
                )

    # -- adaptive throttling -------------------------------------------------------------

    async def throttles(self, *, now: datetime) -> list[Throttle]:
        """The scopes slowed now (paused or recovering)."""
        async with self.db.read() as tx:
            rows = await tx.rows(select(throttles).where(throttles.c.recovered_at > now))
        return [_throttle(row) for row in rows]

    async def throttled(
        self, signal: Signal, *, now: datetime, policy: Policy
    ) -> tuple[Throttle, bool]:
        """Apply `signal` to its scope's back-off, and whether it was an onset; an onset
        also publishes its event (relay.throttled or domain.throttled), in the same
        transaction."""
        key = {"scope": signal.scope.value, "domain": signal.domain}
        blank = {**key, "until": _NEVER, "recovered_at": _NEVER, "onsets": 0, "reply": ""}
        mine = (throttles.c.scope == key["scope"], throttles.c.domain == key["domain"])
        async with self.db.write() as tx:
            await tx.run(self._insert(throttles).on_conflict_do_nothing(), [blank])
            row = await tx.first(select(throttles).where(*mine).with_for_update())
            assert row is not None  # inserted above if it was missing
            current = _throttle(row) if row["onsets"] else None
            throttle, onset = after_signal(current, signal, now=now, policy=policy)
            if not onset:
                return throttle, False
            values = {
                "until": throttle.until,
                "recovered_at": throttle.recovered_at,
                "onsets": throttle.onsets,
                "reply": throttle.reply,
            }
            await tx.run(update(throttles).where(*mine).values(**values))
            data = {
                "scope": signal.scope.value,
                **({"domain": signal.domain} if signal.domain else {}),
                "reply": throttle.reply,
                "until": throttle.until.isoformat(),
                "recovered_at": throttle.recovered_at.isoformat(),
                "onsets": throttle.onsets,
            }
            kind = _EVENT[signal.scope].value
            event = {"at": now, "kind": kind, "type": kind, "data": data, "webhook_pending": True}
            await tx.run(email_events.insert().values(**event))
        return throttle, True


def _throttle(row: Row) -> Throttle:
    return Throttle(
        scope=Scope(row["scope"]),
        domain=row["domain"],
        until=row["until"],
        recovered_at=row["recovered_at"],
        onsets=row["onsets"],
        reply=row["reply"],
    )
