from __future__ import annotations

import pytest

from odiseo.domain.lifecycle import can_move
from odiseo.domain.models import Status


@pytest.mark.parametrize(
    ("source", "target"),
    [
        (Status.PENDING, Status.PROCESSING),
        (Status.SCHEDULED, Status.PROCESSING),
        (Status.PROCESSING, Status.SENT),
        (Status.PROCESSING, Status.SCHEDULED),
        (Status.PROCESSING, Status.FAILED),
        (Status.PENDING, Status.CANCELLED),
        (Status.SCHEDULED, Status.CANCELLED),
        (Status.FAILED, Status.PENDING),
    ],
)
def test_spec_transitions_are_allowed(source: Status, target: Status) -> None:
    assert can_move(source, target)


@pytest.mark.parametrize(
    ("source", "target"),
    [
        (Status.SENT, Status.PENDING),
        (Status.SENT, Status.FAILED),
        (Status.PROCESSING, Status.CANCELLED),
        (Status.CANCELLED, Status.PENDING),
        (Status.PENDING, Status.SENT),
    ],
)
def test_other_transitions_are_not(source: Status, target: Status) -> None:
    assert not can_move(source, target)
