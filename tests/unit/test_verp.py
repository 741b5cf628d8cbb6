"""VERP return paths: each names its message, and only ours check."""

from __future__ import annotations

import re
import uuid

from hypothesis import given
from hypothesis import strategies as st

from odiseo.domain.verp import ReturnPaths

PATHS = ReturnPaths(domain="bounce.odiseo.test", secret=b"a bounce secret of 32 characters")
ID = "5a377f3a-abeb-4e60-a59e-2a706e6021f8"


def test_an_address_names_its_message_with_a_short_tag() -> None:
    address = PATHS.address(ID)
    assert re.fullmatch(rf"bounces\+{ID}\.[a-z2-7]{{10}}@bounce\.odiseo\.test", address)
    assert PATHS.message_id(address) == ID
    assert PATHS.message_id(f"<{address.upper()}>") == ID  # case and brackets ignored


def test_a_forged_or_foreign_address_names_nothing() -> None:
    address = PATHS.address(ID)
    local, _, _ = address.partition("@")
    other = str(uuid.UUID(int=1))
    forged = local.replace(ID, other)  # another message with this message's tag
    assert PATHS.message_id(f"{forged}@bounce.odiseo.test") is None
    assert PATHS.message_id(f"{local}@elsewhere.test") is None
    flipped = local[:-1] + ("b" if local[-1] == "a" else "a")
    assert PATHS.message_id(f"{flipped}@bounce.odiseo.test") is None
    assert PATHS.message_id("postmaster@bounce.odiseo.test") is None
    assert PATHS.message_id("") is None
    other_secret = ReturnPaths(domain="bounce.odiseo.test", secret=b"another secret of 32 chars!!")
    assert other_secret.message_id(address) is None


@given(st.uuids(), st.text(max_size=3))
def test_only_the_right_tag_checks(message: uuid.UUID, noise: str) -> None:
    address = PATHS.address(str(message))
    assert PATHS.message_id(address) == str(message)
    tampered = address.replace("@", f"{noise}@", 1)
    assert PATHS.message_id(tampered) == (str(message) if not noise else None)
