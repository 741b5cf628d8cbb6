"""Sending limits: how many messages a window of time may take (SMTP_MAX_PER_*).

Each limit is a fixed window (a second, a minute, a day, aligned on the epoch) with a
count; workers take tokens from the current window of every limit at once, per
claimed batch, through the store, so the limits hold across processes and machines.
Fixed windows allow a burst at a boundary: the end of one window and the start of
the next can each use the full count, so any sliding window of the same length sees
at most twice the count (README, "Rate limits").
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime


@dataclass(frozen=True, kw_only=True)
class RateLimit:
    name: str  # the row of the usage table: "relay:1", "relay:60", "relay:86400"
    seconds: int  # the window's length
    count: int  # messages per window

    def window(self, now: datetime) -> int:
        """The start of the window `now` falls in, in epoch seconds."""
        epoch = int(now.timestamp())
        return epoch - epoch % self.seconds

    def next_window(self, now: datetime) -> datetime:
        return datetime.fromtimestamp(self.window(now) + self.seconds, UTC)


def relay_limits(
    *, per_second: int | None, per_minute: int | None, per_day: int | None
) -> tuple[RateLimit, ...]:
    """The relay's limits from SMTP_MAX_PER_SECOND, _MINUTE and _DAY (None: no limit)."""
    given = ((1, per_second), (60, per_minute), (86400, per_day))
    return tuple(
        RateLimit(name=f"relay:{seconds}", seconds=seconds, count=count)
        for seconds, count in given
        if count is not None
    )


@dataclass(frozen=True, kw_only=True)
class Grant:
    """Tokens taken for a batch, from these windows; or none, and when to ask again."""

    count: int
    windows: tuple[tuple[str, int], ...] = ()  # (limit name, window start) taken from
    retry_at: datetime | None = None
