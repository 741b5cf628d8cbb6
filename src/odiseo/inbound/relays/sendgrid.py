"""SendGrid's Event Webhook: a JSON array of events, signed with ECDSA.

`X-Twilio-Email-Event-Webhook-Signature` is a base64 DER ECDSA (P-256, SHA-256)
signature over `X-Twilio-Email-Event-Webhook-Timestamp` followed by the raw body,
made with the key whose public half SendGrid shows as the verification key
(SENDGRID_WEBHOOK_PUBLIC_KEY: base64 DER, or PEM). Events read: `bounce` (with
`type` `bounce`, or `blocked` for a refusal of the message), `deferred` and
`spamreport`; the others (processed, delivered, open …) report nothing that came back.
"""

from __future__ import annotations

import base64
import binascii
from typing import TYPE_CHECKING, Any

from odiseo.domain.bounces import Notice, NoticeKind, Returned, returned_bad_address
from odiseo.errors import ConfigError, InvalidReport, ReportRefused
from odiseo.inbound.relays import Item, bracketed, complaint, load_json, text

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric import ec

SIGNATURE = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP = "X-Twilio-Email-Event-Webhook-Timestamp"


def public_key(value: str) -> ec.EllipticCurvePublicKey:
    """SENDGRID_WEBHOOK_PUBLIC_KEY as a key; ConfigError if it is none."""
    # cryptography (OpenSSL) loads here: a process with no SendGrid key never imports it.
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    try:
        if "BEGIN PUBLIC KEY" in value:
            key = serialization.load_pem_public_key(value.encode())
        else:
            key = serialization.load_der_public_key(base64.b64decode(value.strip()))
    except (ValueError, binascii.Error):
        raise ConfigError("SENDGRID_WEBHOOK_PUBLIC_KEY: not a base64 or PEM public key") from None
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise ConfigError("SENDGRID_WEBHOOK_PUBLIC_KEY: not an elliptic-curve key")
    return key


def verify(key: ec.EllipticCurvePublicKey, *, body: bytes, signature: str, timestamp: str) -> None:
    """ReportRefused unless `signature` signs `timestamp` + `body`."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    try:
        decoded = base64.b64decode(signature, validate=True)
        key.verify(decoded, timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    except (binascii.Error, ValueError, InvalidSignature):
        raise ReportRefused(f"{SIGNATURE}: does not verify") from None


def read_sendgrid(body: bytes) -> list[Item]:
    """The bounces, delays and complaints among a batch of events."""
    events = load_json(body)
    if not isinstance(events, list) or not all(isinstance(e, dict) for e in events):
        raise InvalidReport("body: SendGrid sends a JSON array of event objects")
    items = []
    for event in events:
        notice = _notice(event)
        if notice is None:
            continue
        sg_id = text(event.get("sg_message_id"))
        returned = Returned(
            notices=(notice,),
            # sg_message_id is the id of SendGrid's reply to DATA, then .filter… parts
            relay_message_id=sg_id.split(".", 1)[0] if sg_id else None,
            rfc_message_id=bracketed(text(event.get("smtp-id"))),
        )
        items.append(Item(returned=returned, raw=event))
    return items


def _notice(event: dict[str, Any]) -> Notice | None:
    kind = event.get("event")
    recipient = text(event.get("email"))
    detail = {"event": kind, "sg_event_id": text(event.get("sg_event_id"))}
    if kind == "bounce":
        status, reason = text(event.get("status")), text(event.get("reason"))
        blocked = event.get("type") == "blocked"
        return Notice(
            kind=NoticeKind.BOUNCED,
            recipient=recipient,
            source="sendgrid",
            status=status,
            diagnostic=reason,
            suppress=not blocked and returned_bad_address(status, reason),
            detail=detail | {"type": text(event.get("type"))},
        )
    if kind == "deferred":
        return Notice(
            kind=NoticeKind.DELAYED,
            recipient=recipient,
            source="sendgrid",
            diagnostic=text(event.get("response")),
            detail=detail | {"attempt": text(event.get("attempt"))},
        )
    if kind == "spamreport":
        return complaint(recipient, source="sendgrid", detail=detail)
    return None
