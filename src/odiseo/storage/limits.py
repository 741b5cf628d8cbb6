"""Sending limits shared by every worker: one usage row per limit, in the database.

A worker takes tokens for a whole batch in one short transaction (rows locked, FOR
UPDATE on PostgreSQL, BEGIN IMMEDIATE on SQLite), so the rows are touched once per
claim, never per message; unused tokens are given back to the same windows.
Written once in SQLAlchemy Core for both engines.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite

from odiseo.domain.limits import Grant, RateLimit
from odiseo.storage.database import Database
from odiseo.storage.tables import send_usage


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
        async with self.db.read() as tx:
            rows = await tx.rows(
                select(send_usage).where(send_usage.c.name.in_([limit.name for limit in limits]))
            )
        usage = {r["name"]: r for r in rows}
        return [
            limit.name
            for limit in limits
            if (row := usage.get(limit.name)) is not None
            and row["window_start"] == limit.window(now)
            and row["used"] >= limit.count
        ]

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
