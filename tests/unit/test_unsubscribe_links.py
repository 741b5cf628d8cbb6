"""The signed, expiring one-click unsubscribe links (odiseo/unsubscribe.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from odiseo.errors import InvalidEmail, InvalidLink
from odiseo.unsubscribe import UnsubscribeLinks, links_from

NOW = datetime(2026, 12, 1, tzinfo=UTC)
MESSAGE = "0f8fad5b-d9cb-469f-a165-70867728950e"


def links(secret: str = "s" * 32, days: int = 60) -> UnsubscribeLinks:
    made = links_from(public_url="https://mail.example.com/", secret=secret, days=days, tags=())
    assert made is not None
    return made


def test_a_link_names_its_message_and_recipient_until_it_expires() -> None:
    url = links().url(message_id=MESSAGE, recipients=("Zoë@example.com",), now=NOW)
    assert url.startswith("https://mail.example.com/unsubscribe/")
    token = url.rsplit("/", 1)[1]
    who = links().check(token, now=NOW + timedelta(days=59))
    assert (who.message_id, who.recipient) == (MESSAGE, "Zoë@example.com")
    with pytest.raises(InvalidLink, match="expired"):
        links().check(token, now=NOW + timedelta(days=61))


def test_a_changed_or_foreign_token_is_refused() -> None:
    token = links().token(MESSAGE, "a@example.com", now=NOW)
    message, expires, who, signature = token.split(".")
    other_who = links().token(MESSAGE, "b@example.com", now=NOW).split(".")[2]
    forged = [
        f"{message}.{int(expires) + 999}.{who}.{signature}",  # a longer life
        f"{message}.{expires}.{other_who}.{signature}",  # someone else
        f"{message[:-1]}0.{expires}.{who}.{signature}",  # another message
        f"{message}.{expires}.{who}.{signature[:-2]}AA",
        f"{message}.{expires}.{who}",
        "not-a-token",
        "",
    ]
    for token_ in forged:
        with pytest.raises(InvalidLink):
            links().check(token_, now=NOW)
    with pytest.raises(InvalidLink):  # signed under another secret
        links(secret="t" * 32).check(token, now=NOW)


def test_a_link_needs_exactly_one_recipient_and_both_settings() -> None:
    with pytest.raises(InvalidEmail, match="exactly one recipient"):
        links().url(message_id=MESSAGE, recipients=("a@example.com", "b@example.com"), now=NOW)
    assert links_from(public_url=None, secret="s" * 32, days=1, tags=()) is None
    assert links_from(public_url="https://x.example", secret=None, days=1, tags=()) is None
    tagged = links_from(public_url="https://x.example", secret="s" * 32, days=1, tags={"news"})
    assert tagged is not None
    assert tagged.wanted(asked=False, tags=("news", "weekly"))
    assert not tagged.wanted(asked=False, tags=("receipt",))
    assert tagged.wanted(asked=True, tags=())
