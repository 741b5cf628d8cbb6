"""Message ids: time-ordered version-7 UUIDs (RFC 9562) in their canonical text form."""

from __future__ import annotations

import time
import uuid

from odiseo.service import new_message_id
from odiseo.storage.deliveries import new_webhook_id


def test_message_ids_are_canonical_version_7_uuids_of_the_time_they_were_made() -> None:
    before = time.time_ns() // 1_000_000
    ids = [new_message_id() for _ in range(20_000)]
    after = time.time_ns() // 1_000_000
    assert len(set(ids)) == len(ids)
    for text in ids:
        parsed = uuid.UUID(text)
        assert str(parsed) == text
        assert parsed.version == 7 and parsed.variant == uuid.RFC_4122
        assert before <= parsed.int >> 80 <= after  # the first 48 bits: Unix time in ms
    # The last 32 bits are random for every id (before them, uuid-utils' counter starts at
    # a random value each millisecond): ids made in one millisecond stay unguessable.
    for position in (28, 30, 33, 35):
        assert len({text[position] for text in ids}) == 16
    assert {text[19] for text in ids} <= set("89ab")  # the variant's two bits, then counter
    # The counter's start differs from one millisecond to the next (not all four values of
    # text[19], as this once asked: the few milliseconds of one run often miss one).
    starts = {text[:13]: text[14:23] for text in reversed(ids)}  # each millisecond's first
    assert len(set(starts.values())) == len(starts)


def test_message_ids_increase_within_a_process_even_within_a_millisecond() -> None:
    ids = [new_message_id() for _ in range(20_000)]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
    # Tens of ids a millisecond: the order above is not only the clock's.
    assert len({text[:13] for text in ids}) < len(ids) // 2


def test_webhook_ids_are_version_7_too_and_increase() -> None:
    ids = [new_webhook_id() for _ in range(1_000)]
    assert all(i.startswith("msg_") and len(i) == 36 for i in ids)
    assert all(uuid.UUID(hex=i.removeprefix("msg_")).version == 7 for i in ids)
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
