"""Message ids: random version-4 UUIDs in their canonical text form."""

from __future__ import annotations

import uuid

from odiseo.service import new_message_id


def test_message_ids_are_canonical_random_uuids() -> None:
    ids = [new_message_id() for _ in range(20_000)]
    assert len(set(ids)) == len(ids)
    for text in ids:
        parsed = uuid.UUID(text)
        assert str(parsed) == text
        assert parsed.version == 4 and parsed.variant == uuid.RFC_4122
    # Every hex digit outside the fixed bits varies: the randomness is not truncated.
    for position in (0, 9, 15, 20, 35):
        assert len({text[position] for text in ids}) == 16
    assert {text[19] for text in ids} == set("89ab")
