from __future__ import annotations

import pytest

from odiseo.providers.smtp import stated_wait


@pytest.mark.parametrize(
    ("reply", "seconds"),
    [
        ("4.7.1 Greylisted, please try again in 300 seconds", 300),
        ("Too many connections, retry after 5 minutes", 300),
        ("try later (2 min)", 120),
        ("Rate limited. Try again in 1 hour", 3600),
        ("try again in 999999 hours", 6 * 3600),
        ("4.3.0 Temporary failure", None),
        ("Mailbox busy, 3 messages queued", None),
    ],
)
def test_waits_named_in_smtp_replies(reply: str, seconds: float | None) -> None:
    assert stated_wait(reply) == seconds
