"""The legal status transitions (README, "How a message moves"): the one place they live.

Both stores derive what they write from here: which statuses a claim takes, which
an operator may cancel, reschedule or requeue from, what an attempt's outcome
leaves a message in, and what a stop hands back.
"""

from __future__ import annotations

from odiseo.domain.models import Outcome, Status

TRANSITIONS: dict[Status, frozenset[Status]] = {
    Status.PENDING: frozenset({Status.PROCESSING, Status.CANCELLED, Status.SCHEDULED}),
    Status.SCHEDULED: frozenset({Status.PROCESSING, Status.CANCELLED, Status.PENDING}),
    Status.PROCESSING: frozenset(
        {
            Status.SENT,
            Status.SCHEDULED,
            Status.FAILED,
            Status.PENDING,
            Status.PROCESSING,
            Status.SUPPRESSED,
        }
    ),
    Status.SENT: frozenset(),
    Status.FAILED: frozenset({Status.PENDING}),
    Status.CANCELLED: frozenset(),
    Status.SUPPRESSED: frozenset(),
}

# What a claim may take: waiting messages, and processing ones whose lease ran out
# (their worker is presumed dead: processing -> processing under a new worker).
CLAIMABLE = (Status.PENDING, Status.SCHEDULED, Status.PROCESSING)
# Waiting for their time: due now (pending) or later (scheduled).
WAITING = (Status.PENDING, Status.SCHEDULED)
# What an operator's reschedule moves to a new time (pending if due, scheduled if
# later), whichever of the two it is in now; a failed message is retried instead.
MOVABLE = WAITING
# Where an attempt leaves a message.
AFTER_ATTEMPT = {
    Outcome.SENT: Status.SENT,
    Outcome.RETRY: Status.SCHEDULED,
    Outcome.FAILED: Status.FAILED,
    Outcome.SUPPRESSED: Status.SUPPRESSED,
}
FINISHED = frozenset(status for status, onward in TRANSITIONS.items() if not onward)


def sources(target: Status) -> tuple[Status, ...]:
    """The statuses an operator's change may move a message to `target` from."""
    return tuple(
        status
        for status, onward in TRANSITIONS.items()
        if target in onward and status is not Status.PROCESSING
    )


def can_move(source: Status, target: Status) -> bool:
    """Whether a message in `source` may move to `target`."""
    return target in TRANSITIONS[source]


def released(attempts_before: int) -> Status:
    """Where a claimed message goes back to, unattempted: pending if it never was tried,
    scheduled (a retry, due now) if it was."""
    return Status.SCHEDULED if attempts_before > 0 else Status.PENDING


def lease_lost(worker: str | None) -> str:
    """The history's note when a claim finds a message whose worker's lease ran out."""
    return f"worker {worker} lost its lease"


def sql_in(statuses: tuple[Status, ...]) -> str:
    """`status IN ('a', 'b')`, literal, as SQL and partial-index predicates need it."""
    return "status IN (" + ", ".join(f"'{status.value}'" for status in statuses) + ")"
