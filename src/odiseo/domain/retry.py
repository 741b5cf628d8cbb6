"""When to try a failed message again, if at all."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

from odiseo.domain.models import FailureKind


def next_attempt_at(
    *,
    attempt: int,
    kind: FailureKind,
    max_retries: int,
    backoff_seconds: float,
    now: datetime,
    retry_after: float | None = None,
) -> datetime | None:
    """The time of the next attempt after attempt number `attempt` failed, or None to give up.

    The n-th retry waits `backoff_seconds * 2**(n-1)`; with `max_retries` retries a
    message gets at most `1 + max_retries` attempts. A server that names a wait
    (`retry_after`) is not retried sooner than it asked.
    """
    if kind is FailureKind.PERMANENT or attempt > max_retries:
        return None
    delay = backoff_seconds * 2 ** (attempt - 1)
    if retry_after is not None:
        delay = max(delay, retry_after)
    return now + timedelta(seconds=delay)


# "try again in 120 seconds", "retry after 5 minutes", "try later (10 min)"…
_STATED_WAIT = re.compile(
    r"(?:try|retry)[^0-9]{0,24}?(\d{1,6})\s*(s|sec|secs|seconds?|m|min|mins|minutes?|h|hours?)\b",
    re.IGNORECASE,
)
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600}
MAX_STATED_WAIT_SECONDS = 6 * 3600


def stated_wait(reply: str) -> float | None:
    """The wait an SMTP reply asks for, in seconds, if it names one (capped at 6 h)."""
    match = _STATED_WAIT.search(reply)
    if match is None:
        return None
    seconds = int(match.group(1)) * _UNIT_SECONDS[match.group(2)[0].lower()]
    return float(min(seconds, MAX_STATED_WAIT_SECONDS))
