"""The legal status transitions (README, "How a message moves")."""

from __future__ import annotations

from odiseo.domain.models import Status

TRANSITIONS: dict[Status, frozenset[Status]] = {
    Status.PENDING: frozenset({Status.PROCESSING, Status.CANCELLED}),
    Status.SCHEDULED: frozenset({Status.PROCESSING, Status.CANCELLED}),
    Status.PROCESSING: frozenset(
        {Status.SENT, Status.SCHEDULED, Status.FAILED, Status.PENDING, Status.PROCESSING}
    ),
    Status.SENT: frozenset(),
    Status.FAILED: frozenset({Status.PENDING}),
    Status.CANCELLED: frozenset(),
}


def can_move(source: Status, target: Status) -> bool:
    """Whether a message in `source` may move to `target`."""
    return target in TRANSITIONS[source]
