"""Reading mail that comes back: delivery status notifications (RFC 3464) as Postfix,
Exim, Exchange/Outlook and Gmail write them, complaints (RFC 5965), and what is
neither. The fixtures in returned/ follow each sender's documented structure."""

from __future__ import annotations

from pathlib import Path

import pytest

from odiseo.domain.bounces import NoticeKind, relay_message_id, returned_bad_address
from odiseo.inbound.read import Unreadable, read_returned

HERE = Path(__file__).parent / "returned"
OURS = "<5a377f3a-abeb-4e60-a59e-2a706e6021f8@odiseo.test>"


def read(name: str) -> bytes:
    return (HERE / name).read_bytes().replace(b"\n", b"\r\n")


@pytest.mark.parametrize(
    ("name", "recipient", "status", "diagnostic_start"),
    [
        ("exim.eml", "nobody@example.org", "5.0.0", "smtp; 550 5.1.1 <nobody@example.org>"),
        ("exchange.eml", "Ana@Contoso.com", "5.1.10", "smtp;550 5.1.10 RESOLVER.ADR"),
        ("gmail.eml", "nobody@gmail.com", "5.1.1", "smtp; 550-5.1.1 The email account"),
    ],
)
def test_a_permanent_failure_is_a_bounce_of_a_bad_address(
    name: str, recipient: str, status: str, diagnostic_start: str
) -> None:
    returned = read_returned(read(name), message_id="m-1")
    (notice,) = returned.notices
    assert notice.kind is NoticeKind.BOUNCED
    assert notice.recipient == recipient  # Original-Recipient first, as sent
    assert notice.status == status
    assert notice.diagnostic is not None and notice.diagnostic.startswith(diagnostic_start)
    assert notice.suppress, "no such mailbox: the address is suppressed"
    assert returned.rfc_message_id == OURS
    assert returned.message_id == "m-1"
    assert notice.source == "dsn"
    assert notice.detail["action"] == "failed"


def test_exim_generic_status_is_judged_by_the_quoted_reply() -> None:
    (notice,) = read_returned(read("exim.eml"), message_id=None).notices
    assert notice.status == "5.0.0"
    assert notice.detail["remote_mta"] == "dns; mx2.example.org"
    assert notice.detail["reporting_mta"] == "dns; mx.example.org"


def test_a_delay_notice_is_a_delay_and_suppresses_nobody() -> None:
    returned = read_returned(read("gmail-delay.eml"), message_id=None)
    (notice,) = returned.notices
    assert notice.kind is NoticeKind.DELAYED
    assert notice.recipient == "slow@example.net"
    assert notice.status == "4.4.1"
    assert not notice.suppress
    assert notice.detail["will_retry_until"].startswith("Wed, 03 Dec 2026")
    # Gmail quotes no headers here, but names the original in the per-message block.
    assert returned.rfc_message_id == OURS


def test_a_complaint_names_its_recipient_and_always_suppresses() -> None:
    returned = read_returned(read("arf.eml"), message_id="m-1")
    (notice,) = returned.notices
    assert notice.kind is NoticeKind.COMPLAINED
    assert notice.recipient == "Ana@Example.com"
    assert notice.suppress
    assert notice.detail["feedback_type"] == "abuse"
    assert notice.detail["source_ip"] == "198.51.100.7"
    assert returned.rfc_message_id == OURS


def test_a_redacted_complaint_has_no_recipient_of_its_own() -> None:
    raw = read("arf.eml").replace(b"Original-Rcpt-To: <Ana@Example.com>\r\n", b"")
    raw = raw.replace(b"To: Ana@Example.com", b"To: redacted")
    (notice,) = read_returned(raw, message_id="m-1").notices
    assert notice.recipient is None  # the store attributes it to the message's recipient


def test_a_not_spam_report_is_no_complaint() -> None:
    raw = read("arf.eml").replace(b"Feedback-Type: abuse", b"Feedback-Type: not-spam")
    with pytest.raises(Unreadable, match="names no failed, delayed or complaining"):
        read_returned(raw, message_id="m-1")


def test_a_policy_refusal_bounces_without_suppressing() -> None:
    raw = read("exim.eml").replace(
        b"Diagnostic-Code: smtp; 550 5.1.1 <nobody@example.org>: Recipient address rejected:"
        b" User unknown in virtual mailbox table",
        b"Diagnostic-Code: smtp; 550 5.7.1 Message rejected as spam",
    )
    (notice,) = read_returned(raw, message_id=None).notices
    assert notice.kind is NoticeKind.BOUNCED
    assert not notice.suppress


def test_delivered_recipients_give_no_notice() -> None:
    raw = read("gmail.eml").replace(b"Action: failed", b"Action: delivered")
    with pytest.raises(Unreadable, match="names no failed"):
        read_returned(raw, message_id=None)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"Subject: out of office\r\n\r\nI am away until Monday.\r\n", "text/plain"),
        (b"", "text/plain"),
        (b"\x00\xff\xfe garbage", "not a delivery status notification"),
        (
            b"Content-Type: multipart/report; report-type=delivery-status; boundary=x\r\n\r\n"
            b"--x\r\nContent-Type: text/plain\r\n\r\nonly words\r\n--x--\r\n",
            "multipart/report",
        ),
    ],
)
def test_anything_else_is_unreadable_with_a_reason(raw: bytes, reason: str) -> None:
    with pytest.raises(Unreadable, match=reason):
        read_returned(raw, message_id=None)


@pytest.mark.parametrize(
    ("status", "diagnostic", "bad"),
    [
        ("5.1.1", None, True),
        ("5.1.10", "smtp; 550 whatever", True),
        ("5.2.2", "smtp; 552 5.2.2 mailbox full", False),
        ("5.7.1", "smtp; 550 5.1.1 no such user", False),  # a specific status decides
        ("5.0.0", "smtp; 550 5.1.1 no such user", True),
        ("5.0.0", "smtp; 550 user unknown", True),
        ("5.0.0", "smtp; 550 blocked by policy", False),
        ("5.0.0", "X-Postfix; host not found", False),
        (None, "smtp; 550-5.1.1 The account does not exist", True),
        ("4.4.1", "smtp; 550 5.1.1 no such user", False),
        (None, None, False),
    ],
)
def test_returned_bad_address(status: str | None, diagnostic: str | None, bad: bool) -> None:
    assert returned_bad_address(status, diagnostic) is bad


@pytest.mark.parametrize(
    ("reply", "found"),
    [
        ("2.0.0 Ok: queued as 4Y2bQk3z1Xz", "4Y2bQk3z1Xz"),
        (
            "Ok 0100018f2f1e6b0a-1c2d3e4f-5a6b-7c8d-9e0f-a1b2c3d4e5f6-000000",
            "0100018f2f1e6b0a-1c2d3e4f-5a6b-7c8d-9e0f-a1b2c3d4e5f6-000000",
        ),
        ("Ok: queued as xXLCQUfdSi6zDJEJT7M1Ow", "xXLCQUfdSi6zDJEJT7M1Ow"),
        ("Great success", None),
        ("OK", None),
        ("2.0.0 OK  1764590400 a1si1234567pgb.12 - gsmtp", None),
        (None, None),
    ],
)
def test_the_relay_id_of_a_reply_to_data(reply: str | None, found: str | None) -> None:
    assert relay_message_id(reply) == found
