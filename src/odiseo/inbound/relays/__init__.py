"""Hosted relays' bounce and complaint reports: each checked by the relay's own
signature scheme, then read into the same notices as a bounce message.

SES, SendGrid, Postmark and Mailgun rewrite the envelope sender, so their bounces never
reach a VERP address; they report them over HTTP instead. A report names the message
by the relay's id for it (recorded from the relay's reply to DATA) or by our
Message-ID.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from odiseo.domain.bounces import Notice, NoticeKind, Returned
from odiseo.errors import InvalidReport


@dataclass(frozen=True, kw_only=True)
class Item:
    """One report of a relay's payload, read, and the item as it came (kept when it
    matches no message)."""

    returned: Returned
    raw: Any


def load_json(body: bytes) -> Any:
    """The payload as JSON; InvalidReport if it is not."""
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidReport(f"body: not JSON ({exc})") from None


def text(value: Any) -> str | None:
    """A JSON value as a stripped string, or None when absent or empty."""
    if value is None:
        return None
    found = str(value).strip()
    return found or None


def bracketed(message_id: str | None) -> str | None:
    """A Message-ID as stored: in angle brackets."""
    if message_id is None:
        return None
    message_id = message_id.strip()
    return message_id if message_id.startswith("<") else f"<{message_id}>"


def complaint(recipient: str | None, *, source: str, detail: dict[str, Any]) -> Notice:
    """A recipient's spam report: always a suppression (reason `complaint`)."""
    return Notice(
        kind=NoticeKind.COMPLAINED,
        recipient=recipient,
        source=source,
        suppress=True,
        detail={"feedback_type": "abuse", **detail},
    )
