from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from odiseo.domain.models import FailureKind
from odiseo.domain.retry import next_attempt_at

NOW = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(("attempt", "minutes"), [(1, 5), (2, 10), (3, 20)])
def test_nth_retry_waits_backoff_times_two_to_the_n_minus_one(attempt: int, minutes: int) -> None:
    due = next_attempt_at(
        attempt=attempt, kind=FailureKind.TRANSIENT, max_retries=3, backoff_seconds=300, now=NOW
    )
    assert due == NOW + timedelta(minutes=minutes)


def test_gives_up_once_retries_are_spent() -> None:
    # max_retries=3 means at most 4 attempts: the 4th failure is final.
    assert (
        next_attempt_at(
            attempt=4, kind=FailureKind.TRANSIENT, max_retries=3, backoff_seconds=300, now=NOW
        )
        is None
    )


def test_zero_retries_means_one_attempt() -> None:
    assert (
        next_attempt_at(
            attempt=1, kind=FailureKind.TRANSIENT, max_retries=0, backoff_seconds=300, now=NOW
        )
        is None
    )


def test_permanent_failure_is_never_retried() -> None:
    assert (
        next_attempt_at(
            attempt=1, kind=FailureKind.PERMANENT, max_retries=3, backoff_seconds=300, now=NOW
        )
        is None
    )


def test_a_wait_named_by_the_server_is_respected() -> None:
    due = next_attempt_at(
        attempt=1,
        kind=FailureKind.TRANSIENT,
        max_retries=3,
        backoff_seconds=60,
        now=NOW,
        retry_after=900,
    )
    assert due == NOW + timedelta(seconds=900)
