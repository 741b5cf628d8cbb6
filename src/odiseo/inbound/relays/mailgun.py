"""Mailgun's webhooks: one event per POST, signed with HMAC-SHA256.

The body is `{"signature": {"timestamp", "token", "signature"}, "event-data": {…}}`;
`signature` is the hex HMAC-SHA256, keyed with the webhook signing key
(MAILGUN_WEBHOOK_SIGNING_KEY), of `timestamp` followed by `token`. Events read:
`failed` (`severity` `permanent`: bounced; `temporary`: delayed) and `complained`.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from odiseo.domain.bounces import Notice, NoticeKind, Returned, returned_bad_address
from odiseo.errors import InvalidReport, ReportRefused
from odiseo.inbound.relays import Item, bracketed, complaint, load_json, text


def verify(key: bytes, body: bytes) -> dict[str, Any]:
    """The event data once its signature checks; ReportRefused or InvalidReport else."""
    payload = load_json(body)
    if not isinstance(payload, dict):
        raise InvalidReport("body: Mailgun sends a JSON object")
    signed = payload.get("signature")
    if not isinstance(signed, dict):
        raise ReportRefused("signature: missing")
    timestamp, token = str(signed.get("timestamp", "")), str(signed.get("token", ""))
    expected = hmac.new(key, (timestamp + token).encode(), hashlib.sha256).hexdigest()
    if not timestamp or not hmac.compare_digest(expected, str(signed.get("signature", ""))):
        raise ReportRefused("signature: does not verify")
    event = payload.get("event-data")
    if not isinstance(event, dict):
        raise InvalidReport("event-data: missing")
    return event


def read_mailgun(event: dict[str, Any]) -> list[Item]:
    notice = _notice(event)
    if notice is None:
        return []
    headers = _object(_object(event, "message"), "headers")
    returned = Returned(
        notices=(notice,), rfc_message_id=bracketed(text(headers.get("message-id")))
    )
    return [Item(returned=returned, raw=event)]


def _notice(event: dict[str, Any]) -> Notice | None:
    kind, recipient = event.get("event"), text(event.get("recipient"))
    detail = {"event": kind, "reason": text(event.get("reason")), "id": text(event.get("id"))}
    if kind == "complained":
        return complaint(recipient, source="mailgun", detail=detail)
    if kind != "failed":
        return None
    status = event.get("delivery-status")
    status = status if isinstance(status, dict) else {}
    code, words = status.get("code"), text(status.get("message")) or text(status.get("description"))
    diagnostic = f"smtp; {code} {words or ''}".strip() if isinstance(code, int) else words
    enhanced = text(status.get("enhanced-code"))
    if event.get("severity") == "temporary":
        return Notice(
            kind=NoticeKind.DELAYED,
            recipient=recipient,
            source="mailgun",
            status=enhanced,
            diagnostic=diagnostic,
            detail=detail,
        )
    return Notice(
        kind=NoticeKind.BOUNCED,
        recipient=recipient,
        source="mailgun",
        status=enhanced,
        diagnostic=diagnostic,
        suppress=returned_bad_address(enhanced, diagnostic),
        detail=detail,
    )


def _object(parent: dict[str, Any], name: str) -> dict[str, Any]:
    found = parent.get(name)
    return found if isinstance(found, dict) else {}
