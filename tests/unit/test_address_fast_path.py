"""The fast address check must never accept what email-validator refuses, nor differ from it."""

from __future__ import annotations

import random
import string
from typing import Annotated

import pytest
from pydantic import AfterValidator, EmailStr, TypeAdapter, ValidationError

from odiseo.mime import ascii_address
from odiseo.requests import _PLAIN_ADDRESS, Address

FAST = TypeAdapter(Address)
REFERENCE = TypeAdapter(Annotated[EmailStr, AfterValidator(ascii_address)])

FIXED = [
    "user@example.com",
    "User.Name+tag@Example.COM",
    "a@b.co",
    "o'brien@example.ie",
    "x_y-z@sub-domain.example.org",
    "!#$%&'*+/=?^_`{|}~-@example.com",
    ".dot@example.com",
    "dot.@example.com",
    "two..dots@example.com",
    "user@localhost",
    "user@host.local",
    "user@printer.test",
    "user@x.onion",
    "user@1.2.3.4",
    "user@[127.0.0.1]",
    "user@example.c0m",
    "user@example.123",
    "user@-example.com",
    "user@example-.com",
    "user@ex--ample.com",
    "user@xn--bcher-kva.example",
    "user@example",
    "user@.example.com",
    "user@example.com.",
    "user@exa_mple.com",
    '"quoted"@example.com',
    "Name <user@example.com>",
    " user@example.com",
    "üser@example.com",
    "user@bücher.example",
    "a" * 64 + "@example.com",
    "a" * 65 + "@example.com",
    "user@" + "a" * 63 + ".com",
    "user@" + "a" * 64 + ".com",
    "user@" + ".".join(["a" * 60] * 4) + ".com",
    "user@example.com\n",
    "",
]


def _outcome(adapter: TypeAdapter[str], value: str) -> str | None:
    try:
        return adapter.validate_python(value)
    except ValidationError:
        return None


def _random_addresses(count: int) -> list[str]:
    """Mostly well-formed addresses with random flaws: dots, hyphens, digits in odd places."""
    rng = random.Random(20261128)
    local_chars = string.ascii_letters + string.digits + ".-_+'!#~"
    label_chars = string.ascii_lowercase + string.digits + "-"

    def label() -> str:
        return "".join(rng.choice(label_chars) for _ in range(rng.randint(0, 8)))

    found = []
    for _ in range(count):
        local = "".join(rng.choice(local_chars) for _ in range(rng.randint(0, 12)))
        labels = [label() for _ in range(rng.randint(1, 3))]
        labels.append(rng.choice(["com", "io", "c0", "x-y", "test", "local", "7", label()]))
        found.append(f"{local}@{'.'.join(labels)}")
    return found


@pytest.mark.parametrize("value", FIXED)
def test_fixed_cases_agree(value: str) -> None:
    assert _outcome(FAST, value) == _outcome(REFERENCE, value)


def test_random_addresses_agree_with_email_validator() -> None:
    took_fast_path = 0
    for value in _random_addresses(5000):
        if _PLAIN_ADDRESS.fullmatch(value):
            took_fast_path += 1
        assert _outcome(FAST, value) == _outcome(REFERENCE, value), value
    assert took_fast_path > 1000  # the comparison exercised the fast path, not only the fallback
