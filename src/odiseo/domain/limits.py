"""Sending limits: how many messages a window of time may take (SMTP_MAX_PER_*).

Each limit is a fixed window (a second, a minute, a day, aligned on the epoch) with a
count; workers take tokens from the current window of every limit at once, per
claimed batch, through the store, so the limits hold across processes and machines.
Fixed windows allow a burst at a boundary: the end of one window and the start of
the next can each use the full count, so any sliding window of the same length sees
at most twice the count (README, "Rate limits and throttling").
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime


@dataclass(frozen=True, kw_only=True)
class RateLimit:
    name: str  # the row of the usage table: "relay:1", "domain:gmail.com:60"…
    seconds: int  # the window's length
    count: int  # messages per window
    domain: str | None = None  # DOMAIN_LIMITS: the recipient domain it counts

    def window(self, now: datetime) -> int:
        """The start of the window `now` falls in, in epoch seconds."""
        epoch = int(now.timestamp())
        return epoch - epoch % self.seconds

    def next_window(self, now: datetime) -> datetime:
        return datetime.fromtimestamp(self.window(now) + self.seconds, UTC)

    @property
    def label(self) -> str:
        """What an operator calls it: "relay per minute", "gmail.com per second"."""
        per = _WINDOWS.get(self.seconds, f"{self.seconds} seconds")
        return f"{self.domain or 'relay'} per {per}"


_WINDOWS = {1: "second", 60: "minute", 3600: "hour", 86400: "day"}


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


_PER = {"s": 1, "sec": 1, "second": 1, "m": 60, "min": 60, "minute": 60, "h": 3600,
        "hour": 3600, "d": 86400, "day": 86400}  # fmt: skip


def domain_limits(spec: str) -> tuple[RateLimit, ...]:
    """DOMAIN_LIMITS, e.g. "gmail.com=600/min,outlook.com=300/min"; ValueError naming
    the entry that is wrong."""
    limits = []
    for entry in filter(None, (part.strip() for part in spec.split(","))):
        domain, _, rate = entry.partition("=")
        count, _, per = rate.partition("/")
        seconds = _PER.get(per.strip().lower())
        domain = domain.strip().lower().rstrip(".")
        if not domain or "@" in domain or seconds is None or not count.strip().isdigit():
            raise ValueError(f"{entry!r}: expected domain=COUNT/min (or /s, /h, /day)")
        ascii_domain = domain.encode("idna").decode("ascii")
        limits.append(
            RateLimit(
                name=f"domain:{ascii_domain}:{seconds}",
                seconds=seconds,
                count=int(count),
                domain=ascii_domain,
            )
        )
    return tuple(limits)


def domain_of(address: str) -> str:
    return address.rpartition("@")[2].lower()


@dataclass(frozen=True, kw_only=True)
class Grant:
    """Tokens taken for a batch, from these windows; or none, and when to ask again."""

    count: int
    windows: tuple[tuple[str, int], ...] = ()  # (limit name, window start) taken from
    retry_at: datetime | None = None
