"""Postmark's bounce and spam-complaint webhooks: one JSON record per POST.

Postmark signs nothing; its webhooks are secured with HTTP basic auth written into the
webhook URL (`https://postmark:TOKEN@host/inbound/postmark`), so the request is
checked against POSTMARK_WEBHOOK_TOKEN (the password; the user name is not checked)
before its body is read. `RecordType` `Bounce` (by `Type`) or `SpamComplaint`; the
message is named by Postmark's `MessageID` (its id for it) or by the Message-ID of
the returned message when the webhook includes the bounce `Content`.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from typing import Any

from odiseo.domain.bounces import Notice, NoticeKind, Returned
from odiseo.errors import InvalidReport, ReportRefused
from odiseo.inbound.message import message_id_of, parse
from odiseo.inbound.relays import Item, complaint, load_json, text

SUPPRESS = frozenset({"HardBounce", "BadEmailAddress"})
BOUNCED = SUPPRESS | {"SoftBounce", "Blocked", "DMARCPolicy", "VirusNotification", "Unknown"}
DELAYED = frozenset({"Transient", "DnsError"})
COMPLAINT = frozenset({"SpamComplaint", "SpamNotification"})


def check_basic_auth(authorization: str | None, token: bytes) -> None:
    """ReportRefused unless the Authorization header is basic auth with `token`."""
    scheme, _, encoded = (authorization or "").partition(" ")
    if scheme.lower() != "basic":
        raise ReportRefused("Authorization: basic auth with POSTMARK_WEBHOOK_TOKEN is required")
    try:
        _, _, password = base64.b64decode(encoded, validate=True).partition(b":")
    except (binascii.Error, ValueError):
        raise ReportRefused("Authorization: not valid basic auth") from None
    if not hmac.compare_digest(password, token):
        raise ReportRefused("Authorization: wrong credentials")


def read_postmark(body: bytes) -> list[Item]:
    record = load_json(body)
    if not isinstance(record, dict):
        raise InvalidReport("body: Postmark sends a JSON object")
    notice = _notice(record)
    if notice is None:
        return []
    content = text(record.get("Content"))
    quoted = message_id_of(parse(content.encode())) if content else None
    returned = Returned(
        notices=(notice,), relay_message_id=text(record.get("MessageID")), rfc_message_id=quoted
    )
    return [Item(returned=returned, raw=record)]


def _notice(record: dict[str, Any]) -> Notice | None:
    kind = text(record.get("Type")) or text(record.get("RecordType"))
    recipient = text(record.get("Email"))
    detail = {"type": kind, "id": record.get("ID"), "description": text(record.get("Description"))}
    if record.get("RecordType") == "SpamComplaint" or kind in COMPLAINT:
        return complaint(recipient, source="postmark", detail=detail)
    if kind in DELAYED:
        diagnostic = text(record.get("Details"))
        return Notice(
            kind=NoticeKind.DELAYED,
            recipient=recipient,
            source="postmark",
            diagnostic=diagnostic,
            detail=detail,
        )
    if kind in BOUNCED:
        return Notice(
            kind=NoticeKind.BOUNCED,
            recipient=recipient,
            source="postmark",
            diagnostic=text(record.get("Details")),
            suppress=kind in SUPPRESS,
            detail=detail,
        )
    return None  # AutoResponder, Subscribe, ManuallyDeactivated …: nothing came back
