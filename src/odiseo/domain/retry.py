"""When to try a failed message again, if at all."""

from __future__ import annotations

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
