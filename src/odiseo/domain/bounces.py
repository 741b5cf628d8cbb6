"""Which refusals mean an address is bad: the suppression rule (README, "Suppressions").

Only a recipient refused at RCPT can be suppressed, and only when the refusal says
the mailbox or the address does not exist or cannot take mail — never for policy,
spam or content refusals, nor for a bad *sender* address, which concern the message.

| reply                                            | suppress? |
|--------------------------------------------------|-----------|
| enhanced 5.1.1, 5.1.2, 5.1.3, 5.1.6, 5.1.10      | yes       |
| any other enhanced code (5.1.7/5.1.8 sender,     | no        |
|   5.7.x policy, 5.2.x mailbox full, 4.x.x …)     |           |
| 550, 551, 553 without an enhanced code, unless   | yes       |
|   the text speaks of policy, spam or blocking    |           |
| anything else (4xx, 552, 554 …)                  | no        |

Mail coming back later (a delivery status notification, a hosted relay's webhook) is
judged by the same rule: its status code (5.1.1 …) when it is specific, else the SMTP
reply quoted in its diagnostic (`returned_bad_address`). A complaint always suppresses.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field
from typing import Any

BAD_ADDRESS_DETAILS = frozenset({(1, 1), (1, 2), (1, 3), (1, 6), (1, 10)})
BAD_ADDRESS_CODES = frozenset({550, 551, 553})
# After the reply's own three-digit code, as the provider stores a refusal ("550 5.1.1 …").
_ENHANCED = re.compile(r"\s*(?:\d{3}[ -])?\s*([245])\.(\d{1,3})\.(\d{1,3})(?!\d)")
_REPLY = re.compile(r"(?:smtp;\s*)?([245]\d\d)[ -]?(.*)", re.IGNORECASE | re.DOTALL)
_POLICY = re.compile(
    r"polic|spam|block|blacklist|reputation|reject(ed)? for|listed|abuse|dmarc|spf|dkim"
    r"|rate limit|too many|relay",
    re.IGNORECASE,
)


def enhanced_status(response: str) -> tuple[int, int, int] | None:
    """The RFC 3463 enhanced status code a reply text starts with (after its reply
    code, if the text has one), if any."""
    found = _ENHANCED.match(response)
    if found is None:
        return None
    klass, subject, detail = (int(part) for part in found.groups())
    return klass, subject, detail


def bad_address(code: int, response: str) -> bool:
    """Whether a RCPT refusal with this reply means the address itself is bad."""
    if not 500 <= code < 600:
        return False
    enhanced = enhanced_status(response)
    if enhanced is not None:
        klass, subject, detail = enhanced
        return klass == 5 and (subject, detail) in BAD_ADDRESS_DETAILS
    return code in BAD_ADDRESS_CODES and _POLICY.search(response) is None


def normalise_address(address: str) -> str:
    """The suppression list's key for an address: trimmed and lower-cased."""
    return address.strip().lower()


def returned_bad_address(status: str | None, diagnostic: str | None) -> bool:
    """Whether a permanent failure reported after the fact (a DSN's Status and
    Diagnostic-Code, or a relay's equivalents) means the address itself is bad."""
    enhanced = enhanced_status(status or "")
    if enhanced is not None and enhanced[0] != 5:
        return False
    if enhanced is not None and enhanced[1:] != (0, 0):  # a specific status decides
        return enhanced[1:] in BAD_ADDRESS_DETAILS
    reply = _REPLY.match((diagnostic or "").strip())
    if reply is None:
        return False
    code, text = reply.groups()
    return bad_address(int(code), " ".join(text.split()))


def reply_code(diagnostic: str | None) -> int | None:
    """The SMTP reply code a diagnostic quotes (`smtp; 550 5.1.1 …` -> 550), if any."""
    found = _REPLY.match((diagnostic or "").strip())
    return int(found.group(1)) if found else None


class NoticeKind(enum.StrEnum):
    """What mail coming back says happened to one recipient."""

    BOUNCED = "bounced"  # failed for good
    DELAYED = "delayed"  # still being tried by the receiving side
    COMPLAINED = "complained"  # reported as spam


@dataclass(frozen=True, kw_only=True)
class Notice:
    """One recipient's fate, as a bounce, a complaint or a relay's webhook tells it."""

    kind: NoticeKind
    recipient: str | None  # a complaint may not name it (then: the message's only one)
    source: str  # dsn, arf, ses, sendgrid, postmark, mailgun
    status: str | None = None  # the enhanced status code, e.g. 5.1.1
    diagnostic: str | None = None  # the receiving server's words
    suppress: bool = False  # a bad address, or a complaint
    detail: dict[str, Any] = field(default_factory=dict)  # the source's own fields


@dataclass(frozen=True, kw_only=True)
class Returned:
    """What came back about one message, and every way to find that message."""

    notices: tuple[Notice, ...]
    message_id: str | None = None  # ours, from a VERP return path
    rfc_message_id: str | None = None  # the Message-ID it quotes, angle brackets kept
    relay_message_id: str | None = None  # the id the relay gave it in its SMTP reply


_RELAY_ID = (
    re.compile(r"queued as\s+<?([A-Za-z0-9][A-Za-z0-9._@-]{3,200})>?", re.IGNORECASE),
    re.compile(
        r"^(?:2\.\d{1,3}\.\d{1,3}\s+)?ok:?\s+<?([A-Za-z0-9][A-Za-z0-9._-]{7,200})>?\s*$",
        re.IGNORECASE,
    ),
)


def relay_message_id(reply: str | None) -> str | None:
    """The id a relay gave a message in its reply to DATA, which its bounce webhooks
    name: `250 2.0.0 Ok: queued as 4Y2b…` (Postfix, SendGrid and others) or
    `250 Ok 0100018f…-000000` (Amazon SES). None when the reply carries none."""
    text = (reply or "").strip()
    for pattern in _RELAY_ID:
        found = pattern.search(text)
        if found is not None:
            return found.group(1)
    return None
