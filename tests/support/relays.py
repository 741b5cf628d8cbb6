"""Hosted relays' side of their reports, made locally: an SNS signing certificate and the
signatures of SNS, SendGrid and Mailgun, over payloads in each relay's documented form."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID

TOPIC = "arn:aws:sns:eu-west-1:123456789012:ses-bounces"
CERT_URL = "https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-0123456789abcdef.pem"
SUBSCRIBE_URL = (
    "https://sns.eu-west-1.amazonaws.com/?Action=ConfirmSubscription"
    f"&TopicArn={TOPIC}&Token=2336412f37fb687f5d51e6e2425c464de12884d5"
)
MAILGUN_KEY = "key-mailgun-signing-0123456789abcdef"
POSTMARK_TOKEN = "postmark-token-0123456789abcdef"


def _certificate(key: rsa.RSAPrivateKey) -> bytes:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.amazonaws.com")])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    return certificate.public_bytes(serialization.Encoding.PEM)


@dataclass
class Sns:
    """Signs SNS messages with a key of its own; `fetch` serves its certificate (and
    records every URL asked for), as the injectable certificate fetch."""

    key: rsa.RSAPrivateKey = field(
        default_factory=lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048)
    )
    fetched: list[str] = field(default_factory=list)

    async def fetch(self, url: str) -> bytes:
        self.fetched.append(url)
        return _certificate(self.key) if url == CERT_URL else b"<ConfirmSubscriptionResponse/>"

    def sign(self, message: dict[str, Any], *, version: str = "2") -> dict[str, Any]:
        names = ["Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"]
        if message["Type"] != "Notification":
            names = ["Message", "MessageId", "SubscribeURL", "Timestamp", "Token"]
            names += ["TopicArn", "Type"]
        text = "".join(f"{n}\n{message[n]}\n" for n in names if n in message)
        algorithm = hashes.SHA256() if version == "2" else hashes.SHA1()
        signature = self.key.sign(text.encode(), padding.PKCS1v15(), algorithm)
        return {
            **message,
            "SignatureVersion": version,
            "Signature": base64.b64encode(signature).decode(),
            "SigningCertURL": CERT_URL,
        }

    def notification(self, ses_event: dict[str, Any], **changes: Any) -> dict[str, Any]:
        message = {
            "Type": "Notification",
            "MessageId": "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324",
            "TopicArn": TOPIC,
            "Message": json.dumps(ses_event),
            "Timestamp": "2026-12-01T12:00:05.123Z",
            "UnsubscribeURL": "https://sns.eu-west-1.amazonaws.com/?Action=Unsubscribe",
            **changes,
        }
        return self.sign(message)

    def confirmation(self) -> dict[str, Any]:
        return self.sign(
            {
                "Type": "SubscriptionConfirmation",
                "MessageId": "165545c9-2a5c-472c-8df2-7ff2be2b3b1b",
                "Token": "2336412f37fb687f5d51e6e2425c464de12884d5",
                "TopicArn": TOPIC,
                "Message": f"You have chosen to subscribe to the topic {TOPIC}.",
                "SubscribeURL": SUBSCRIBE_URL,
                "Timestamp": "2026-12-01T11:00:00.000Z",
            }
        )


def ses_bounce(
    *, recipient: str, ses_id: str, rfc_message_id: str, bounce_type: str = "Permanent"
) -> dict[str, Any]:
    """An SES bounce notification, as SES documents its contents."""
    return {
        "notificationType": "Bounce",
        "bounce": {
            "bounceType": bounce_type,
            "bounceSubType": "General",
            "bouncedRecipients": [
                {
                    "emailAddress": recipient,
                    "action": "failed",
                    "status": "5.1.1",
                    "diagnosticCode": "smtp; 550 5.1.1 user unknown",
                }
            ],
            "timestamp": "2026-12-01T12:00:04.000Z",
            "feedbackId": "0100018f2f1e6b0a-aaaa-bbbb-cccc-dddddddddddd-000000",
            "reportingMTA": "dsn; a8-70.smtp-out.amazonses.com",
        },
        "mail": _ses_mail(recipient, ses_id, rfc_message_id),
    }


def ses_complaint(*, recipient: str, ses_id: str, rfc_message_id: str) -> dict[str, Any]:
    return {
        "notificationType": "Complaint",
        "complaint": {
            "userAgent": "ExampleCorp Feedback Loop (V0.01)",
            "complainedRecipients": [{"emailAddress": recipient}],
            "complaintFeedbackType": "abuse",
            "arrivalDate": "2026-12-01T12:30:00.000Z",
            "timestamp": "2026-12-01T12:30:01.000Z",
            "feedbackId": "0100018f2f1e6b0a-eeee-ffff-0000-111111111111-000000",
        },
        "mail": _ses_mail(recipient, ses_id, rfc_message_id),
    }


def ses_delay(*, recipient: str, ses_id: str, rfc_message_id: str) -> dict[str, Any]:
    return {
        "eventType": "DeliveryDelay",
        "deliveryDelay": {
            "timestamp": "2026-12-01T13:00:00.000Z",
            "delayType": "TransientCommunicationFailure",
            "expirationTime": "2026-12-02T12:00:00.000Z",
            "delayedRecipients": [
                {
                    "emailAddress": recipient,
                    "status": "4.4.1",
                    "diagnosticCode": "smtp; 421 4.4.1 Unable to connect",
                }
            ],
        },
        "mail": _ses_mail(recipient, ses_id, rfc_message_id),
    }


def _ses_mail(recipient: str, ses_id: str, rfc_message_id: str) -> dict[str, Any]:
    return {
        "timestamp": "2026-12-01T12:00:00.000Z",
        "source": "noreply@odiseo.io",
        "messageId": ses_id,
        "destination": [recipient],
        "headersTruncated": False,
        "commonHeaders": {
            "from": ["Odiseo <noreply@odiseo.io>"],
            "to": [recipient],
            "messageId": rfc_message_id,
            "subject": "Hello",
        },
    }


@dataclass
class SendGrid:
    """The Event Webhook's signing key; `public` is what SendGrid shows (base64 DER)."""

    key: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP256R1())
    )

    @property
    def public(self) -> str:
        der = self.key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return base64.b64encode(der).decode()

    def headers(self, body: bytes, timestamp: str = "1764590405") -> dict[str, str]:
        signature = self.key.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
        return {
            "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
            "X-Twilio-Email-Event-Webhook-Timestamp": timestamp,
            "Content-Type": "application/json",
        }


def sendgrid_events(*, recipient: str, rfc_message_id: str) -> list[dict[str, Any]]:
    """A batch as SendGrid posts it: a bounce, a deferral, a spam report and a delivery."""
    common = {
        "email": recipient,
        "timestamp": 1764590405,
        "smtp-id": rfc_message_id,
        "sg_message_id": "xXLCQUfdSi6zDJEJT7M1Ow.filterdrecv-5bf6c9f5c4-2xk8m-1-6579A1B2-3.0",
    }
    return [
        {**common, "event": "delivered", "sg_event_id": "ZGVsaXZlcmVk", "response": "250 OK"},
        {
            **common,
            "event": "bounce",
            "sg_event_id": "Ym91bmNl",
            "reason": "550 5.1.1 The email account that you tried to reach does not exist.",
            "status": "5.1.1",
            "type": "bounce",
        },
        {
            **common,
            "event": "deferred",
            "sg_event_id": "ZGVmZXJyZWQ",
            "response": "400 try again later",
            "attempt": "5",
        },
        {**common, "event": "spamreport", "sg_event_id": "c3BhbXJlcG9ydA"},
    ]


def mailgun_body(event_data: dict[str, Any], *, key: str = MAILGUN_KEY) -> bytes:
    timestamp, token = "1764590405", "a8ce0edb2dd8301dee6c2405235584e45aa91d1e9f979f3de0"
    signature = hmac.new(key.encode(), (timestamp + token).encode(), hashlib.sha256).hexdigest()
    payload = {
        "signature": {"timestamp": timestamp, "token": token, "signature": signature},
        "event-data": event_data,
    }
    return json.dumps(payload).encode()


def mailgun_failed(
    *, recipient: str, message_id: str, severity: str = "permanent"
) -> dict[str, Any]:
    """A `failed` event as Mailgun documents it; `message_id` without angle brackets."""
    return {
        "id": "G9Bn5sl1TC6nu79C8C0bwg",
        "timestamp": 1764590405.0,
        "event": "failed",
        "severity": severity,
        "reason": "bounce" if severity == "permanent" else "generic",
        "recipient": recipient,
        "message": {"headers": {"message-id": message_id, "to": recipient}},
        "delivery-status": {
            "code": 550 if severity == "permanent" else 452,
            "message": "5.1.1 The email account that you tried to reach does not exist"
            if severity == "permanent"
            else "4.2.2 Mailbox full, try later",
            "description": "",
            "attempt-no": 1,
        },
    }


def postmark_bounce(
    *, recipient: str, postmark_id: str, kind: str = "HardBounce"
) -> dict[str, Any]:
    """A bounce webhook record as Postmark documents it."""
    return {
        "RecordType": "Bounce",
        "ID": 4323372036854775807,
        "Type": kind,
        "TypeCode": 1,
        "Name": "Hard bounce",
        "Tag": "Test",
        "MessageID": postmark_id,
        "ServerID": 23,
        "MessageStream": "outbound",
        "Description": "The server was unable to deliver your message (ex: unknown user, "
        "mailbox not found).",
        "Details": "smtp;550 5.1.1 The email account that you tried to reach does not exist",
        "Email": recipient,
        "From": "noreply@odiseo.io",
        "BouncedAt": "2026-12-01T12:00:05Z",
        "DumpAvailable": True,
        "Inactive": True,
        "CanActivate": True,
        "Subject": "Hello",
        "Metadata": {},
    }


def basic(password: str, user: str = "postmark") -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}", "Content-Type": "application/json"}
