"""Amazon SES bounce, complaint and delay notifications, delivered by Amazon SNS.

An SNS message is JSON whose `Signature` is an RSA signature (SHA1 for
`SignatureVersion` 1, SHA256 for 2) over its fields, made with the key of the
certificate at `SigningCertURL`. That URL must be https on an `sns.<region>.amazonaws.com`
host, so only SNS's certificate can vouch for a message; and the message's `TopicArn`
must be one of SES_SNS_TOPIC_ARNS, since any AWS account can make SNS sign messages.
The certificate is fetched once per URL by a function the caller gives (tests give
one that serves a locally made certificate).

`SubscriptionConfirmation` (sent when the subscription is created) is confirmed by
fetching its `SubscribeURL` (checked the same way); `Notification`s carry the SES
event as JSON in `Message`: `notificationType` (SES notifications) or `eventType`
(configuration-set event publishing) `Bounce`, `Complaint` or `DeliveryDelay`.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Awaitable, Callable, Collection
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from odiseo.domain.bounces import Notice, NoticeKind, Returned, returned_bad_address
from odiseo.errors import InvalidReport, ReportRefused
from odiseo.inbound.relays import Item, bracketed, load_json, text

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric import rsa

Fetch = Callable[[str], Awaitable[bytes]]  # GET an https URL, the body

_SNS_HOST = re.compile(r"sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?")
_SIGNED = {
    "Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    "SubscriptionConfirmation": (
        "Message",
        "MessageId",
        "SubscribeURL",
        "Timestamp",
        "Token",
        "TopicArn",
        "Type",
    ),
}
_SIGNED["UnsubscribeConfirmation"] = _SIGNED["SubscriptionConfirmation"]
_HASHES = {"1": "SHA1", "2": "SHA256"}  # SignatureVersion: the hash, named in cryptography


def sns_url(url: str | None, what: str) -> str:
    """`url` if it is https on an SNS host; ReportRefused otherwise."""
    parts = urlsplit(url or "")
    if parts.scheme != "https" or not _SNS_HOST.fullmatch(parts.hostname or ""):
        raise ReportRefused(f"{what} is not an https URL of Amazon SNS")
    if parts.port not in (None, 443) or parts.username or parts.password:
        raise ReportRefused(f"{what} is not an https URL of Amazon SNS")
    return url or ""


class SnsVerifier:
    """Checks SNS messages against SNS's certificates and the allowed topics."""

    def __init__(self, *, topics: Collection[str], fetch: Fetch) -> None:
        self.topics = frozenset(topics)
        self.fetch = fetch
        self._keys: dict[str, rsa.RSAPublicKey] = {}

    async def verify(self, body: bytes) -> dict[str, Any]:
        """The SNS message, once authentic and from an allowed topic.

        Raises:
            InvalidReport: not an SNS message.
            ReportRefused: a topic not allowed, or a signature that does not check.
        """
        # cryptography (OpenSSL) loads here: a process with no SNS topic never imports it.
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding

        message = load_json(body)
        if not isinstance(message, dict) or message.get("Type") not in _SIGNED:
            raise InvalidReport("body: not an Amazon SNS message (no known Type)")
        if message.get("TopicArn") not in self.topics:
            raise ReportRefused("TopicArn: not one of SES_SNS_TOPIC_ARNS")
        name = _HASHES.get(str(message.get("SignatureVersion")))
        if name is None:
            raise ReportRefused("SignatureVersion: must be 1 or 2")
        try:
            signature = base64.b64decode(str(message.get("Signature", "")), validate=True)
        except (binascii.Error, ValueError):
            raise ReportRefused("Signature: not base64") from None
        key = await self._key(sns_url(message.get("SigningCertURL"), "SigningCertURL"))
        try:
            algorithm: hashes.HashAlgorithm = getattr(hashes, name)()
            key.verify(signature, _string_to_sign(message), padding.PKCS1v15(), algorithm)
        except InvalidSignature:
            raise ReportRefused("Signature: does not verify") from None
        return message

    async def _key(self, url: str) -> rsa.RSAPublicKey:
        from cryptography import x509
        from cryptography.hazmat.primitives.asymmetric import rsa

        key = self._keys.get(url)
        if key is None:
            try:
                certificate = x509.load_pem_x509_certificate(await self.fetch(url))
            except ValueError:
                raise ReportRefused("SigningCertURL: not a PEM certificate") from None
            public = certificate.public_key()
            if not isinstance(public, rsa.RSAPublicKey):
                raise ReportRefused("SigningCertURL: not an RSA certificate")
            key = self._keys[url] = public
        return key


def _string_to_sign(message: dict[str, Any]) -> bytes:
    names = _SIGNED[message["Type"]]
    lines = []
    for name in names:
        if name in message and message[name] is not None:
            lines.append(f"{name}\n{message[name]}\n")
        elif name != "Subject":
            raise InvalidReport(f"body: the SNS message has no {name}")
    return "".join(lines).encode()


def read_ses(notification: str) -> list[Item]:
    """The notices of an SES notification (the `Message` of an SNS Notification)."""
    event = load_json(notification.encode())
    if not isinstance(event, dict):
        raise InvalidReport("Message: not an SES notification object")
    kind = event.get("notificationType") or event.get("eventType")
    mail = _optional(event, "mail")
    if kind == "Bounce":
        notices = _bounces(_object(event, "bounce"))
    elif kind == "Complaint":
        notices = _complaints(_object(event, "complaint"))
    elif kind == "DeliveryDelay":
        notices = _delays(_object(event, "deliveryDelay"))
    else:  # Delivery, Send, Open …: nothing came back
        return []
    headers = _optional(mail, "commonHeaders")
    returned = Returned(
        notices=tuple(notices),
        relay_message_id=text(mail.get("messageId")),
        rfc_message_id=bracketed(text(headers.get("messageId"))),
    )
    return [Item(returned=returned, raw=event)] if notices else []


def _object(event: dict[str, Any], name: str) -> dict[str, Any]:
    found = event.get(name)
    if not isinstance(found, dict):
        raise InvalidReport(f"Message: no {name} object")
    return found


def _optional(parent: dict[str, Any], name: str) -> dict[str, Any]:
    found = parent.get(name)
    return found if isinstance(found, dict) else {}


def _recipients(block: dict[str, Any], name: str) -> list[dict[str, Any]]:
    found = block.get(name)
    if not isinstance(found, list) or not all(isinstance(r, dict) for r in found):
        raise InvalidReport(f"Message: {name} must be a list of objects")
    return found


def _bounces(bounce: dict[str, Any]) -> list[Notice]:
    permanent = bounce.get("bounceType") == "Permanent"
    detail = {
        "bounce_type": text(bounce.get("bounceType")),
        "bounce_sub_type": text(bounce.get("bounceSubType")),
    }
    notices = []
    for r in _recipients(bounce, "bouncedRecipients"):
        status, diagnostic = text(r.get("status")), text(r.get("diagnosticCode"))
        # Without a reply to judge, SES's own verdict: Permanent means drop the address.
        bad = returned_bad_address(status, diagnostic) if status or diagnostic else True
        notices.append(
            Notice(
                kind=NoticeKind.BOUNCED,
                recipient=text(r.get("emailAddress")),
                source="ses",
                status=status,
                diagnostic=diagnostic,
                suppress=permanent and bad,
                detail=detail,
            )
        )
    return notices


def _complaints(complaint: dict[str, Any]) -> list[Notice]:
    feedback = text(complaint.get("complaintFeedbackType")) or "abuse"
    if feedback == "not-spam":
        return []
    return [
        Notice(
            kind=NoticeKind.COMPLAINED,
            recipient=text(r.get("emailAddress")),
            source="ses",
            suppress=True,
            detail={"feedback_type": feedback},
        )
        for r in _recipients(complaint, "complainedRecipients")
    ]


def _delays(delay: dict[str, Any]) -> list[Notice]:
    return [
        Notice(
            kind=NoticeKind.DELAYED,
            recipient=text(r.get("emailAddress")),
            source="ses",
            status=text(r.get("status")),
            diagnostic=text(r.get("diagnosticCode")),
            detail={"delay_type": text(delay.get("delayType"))},
        )
        for r in _recipients(delay, "delayedRecipients")
    ]
