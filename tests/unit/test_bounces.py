"""Which RCPT refusals put an address on the suppression list (domain/bounces.py).

The replies are as the SMTP provider stores them (providers/smtp/smtp.py: the reply
code, a space, then the server's text, continuation lines joined by newlines), so the
enhanced status code (RFC 3463) comes after the three-digit code, not first.
"""

from __future__ import annotations

import pytest

from odiseo.domain.bounces import bad_address, enhanced_status

SUPPRESSES = [
    (550, "550 5.1.1 <gone@example.com>: Recipient address rejected: User unknown"),
    (554, "554 5.1.1 user unknown"),  # the enhanced code says the mailbox is bad
    (550, "550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found"),
    (
        550,
        "550 5.1.1 The email account that you tried to reach does not exist.\n"
        "5.1.1 https://support.google.com/mail/?p=NoSuchUser",
    ),
    (553, "553 5.1.3 bad recipient address syntax"),
    (550, "550 User unknown"),  # no enhanced code: 550 without a policy word
    (551, "551 User not local"),
]
KEEPS = [
    (550, "550 5.7.1 Access denied"),  # policy, whatever the wording
    (550, "550 5.7.1 Message rejected"),
    (554, "554 5.7.1 Service unavailable; client host blocked"),
    (550, "550 5.2.2 Mailbox full"),  # the mailbox exists
    (552, "552 5.2.2 Quota exceeded"),
    (553, "553 5.1.8 sender domain does not exist"),  # a bad *sender*
    (550, "550 5.1.7 bad sender mailbox"),
    (550, "550 4.1.1 odd but transient"),  # the enhanced class says transient
    (450, "450 4.1.1 mailbox temporarily unavailable"),
    (450, "450 5.1.1 a 4xx is never permanent"),
    (550, "550 User unknown; spam score too high"),  # policy words: the message
    (554, "554 Transaction failed"),
]


@pytest.mark.parametrize(("code", "reply"), SUPPRESSES)
def test_refusals_saying_the_address_is_bad_suppress(code: int, reply: str) -> None:
    assert bad_address(code, reply)


@pytest.mark.parametrize(("code", "reply"), KEEPS)
def test_policy_full_sender_and_transient_refusals_do_not(code: int, reply: str) -> None:
    assert not bad_address(code, reply)


def test_the_enhanced_code_is_read_after_the_reply_code() -> None:
    assert enhanced_status("550 5.1.1 no such user") == (5, 1, 1)
    assert enhanced_status("5.1.10 not found") == (5, 1, 10)
    assert enhanced_status("550 5.1.1234 not one") is None
    assert enhanced_status("550 User unknown") is None
