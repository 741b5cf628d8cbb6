"""SMTP submission with Python's smtplib (STARTTLS + AUTH), on both stores: the message is
stored before the 250, sent as the application wrote it (attachment byte-identical), Bcc
delivered and never shown, and the 250's id answers GET /emails/{id}."""

from __future__ import annotations

import base64
import re
import smtplib
from datetime import UTC, datetime
from email import message_from_bytes, policy

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from odiseo.domain.models import SuppressionReason
from tests.api.smtp.conftest import Submission, in_thread, message
from tests.support.app import ALL_KEY, READ_KEY, SEND_KEY

QUEUED = re.compile(r"2\.0\.0 queued as ([0-9a-f-]{36})")
ATTACHMENT = bytes(range(256)) * 40 + b"\r\n.\r\n\x00end"  # every byte, and a DATA terminator


def send(
    submission: Submission, data: bytes, *, sender: str, recipients: list[str], key: str = SEND_KEY
) -> tuple[int, str]:
    """MAIL, RCPT… and DATA over STARTTLS after AUTH; the DATA reply."""
    with submission.connect() as client:
        client.login("apikey", key)
        code, _ = client.mail(sender)
        assert code == 250
        for recipient in recipients:
            code, text = client.rcpt(recipient)
            assert code == 250, text
        code, reply = client.data(data)
        return code, reply.decode()


async def test_smtplib_starttls_auth_delivers_as_written(submission: Submission) -> None:
    made = message(To="To <to@example.com>", Cc="cc@example.com")
    made.add_attachment(
        ATTACHMENT, maintype="application", subtype="octet-stream", filename="a.bin"
    )
    made["Bcc"] = "hidden@example.com"
    data = made.as_bytes(policy=policy.SMTP)

    code, reply = await in_thread(
        lambda: send(
            submission,
            data,
            sender="app@odiseo.io",
            recipients=["to@example.com", "cc@example.com", "hidden@example.com"],
        )
    )

    assert code == 250, reply
    found = QUEUED.search(reply)
    assert found, reply
    message_id = found[1]
    stored = await submission.read(message_id)  # committed before the 250
    assert stored["status"] == "pending"
    assert stored["to"] == ["to@example.com"] and stored["cc"] == ["cc@example.com"]
    assert stored["bcc"] == ["hidden@example.com"]
    assert stored["subject"] == "Hello" and stored["from_email"] == "app@odiseo.io"

    assert await submission.deliver() == 1
    (received,) = submission.received
    assert sorted(received.recipients) == ["cc@example.com", "hidden@example.com", "to@example.com"]
    assert b"hidden@example.com" not in received.data
    assert b"\r\nBcc:" not in received.data
    _, _, body = data.partition(b"\r\n\r\n")
    assert received.data.endswith(b"\r\n\r\n" + body)  # the body exactly as written
    parsed = message_from_bytes(received.data, policy=policy.default)
    (attachment,) = parsed.iter_attachments()
    assert attachment.get_payload(decode=True) == ATTACHMENT
    assert parsed["Message-ID"] and parsed["Date"]  # added: the application gave neither
    assert parsed["Message-ID"] == stored["rfc_message_id"] == f"<{message_id}@odiseo.io>"
    assert (await submission.read(message_id))["status"] == "sent"


async def test_message_id_and_date_of_the_application_are_kept(submission: Submission) -> None:
    made = message(Message_ID="<app-1@acme.example>", Date="Mon, 01 Dec 2025 10:00:00 +0000")
    data = made.as_bytes(policy=policy.SMTP)
    code, reply = await in_thread(
        lambda: send(submission, data, sender="app@odiseo.io", recipients=["to@example.com"])
    )
    assert code == 250, reply
    await submission.deliver()
    (received,) = submission.received
    assert received.data == data  # nothing to add, nothing to take out: byte for byte


async def test_auth_login_and_plain_with_any_user_name(submission: Submission) -> None:
    def both() -> list[int]:
        codes = []
        for mechanism in ("LOGIN", "PLAIN"):
            with submission.connect() as client:
                client.user, client.password = "whoever", ALL_KEY
                code, _ = client.auth(mechanism, getattr(client, f"auth_{mechanism.lower()}"))
                codes.append(code)
        return codes

    assert await in_thread(both) == [235, 235]


async def test_no_auth_is_530(submission: Submission) -> None:
    def mail() -> tuple[int, bytes]:
        with submission.connect() as client:
            return client.mail("app@odiseo.io")

    code, text = await in_thread(mail)
    assert code == 530, text
    await submission.nothing_stored()


@pytest.mark.parametrize(
    ("key", "why"),
    [("wrong-key-0123456789abcdef", b"credentials invalid"), (READ_KEY, b"send scope")],
)
async def test_wrong_or_read_only_key_is_535(submission: Submission, key: str, why: bytes) -> None:
    def login() -> smtplib.SMTPAuthenticationError:
        with submission.connect() as client, pytest.raises(smtplib.SMTPAuthenticationError) as err:
            client.login("apikey", key)
        return err.value

    refused = await in_thread(login)
    assert refused.smtp_code == 535 and why in refused.smtp_error, refused


async def test_sender_not_allowed_is_550(submission: Submission) -> None:
    def envelope() -> tuple[int, bytes]:
        with submission.connect() as client:
            client.login("apikey", SEND_KEY)
            return client.mail("someone@elsewhere.example")

    code, text = await in_thread(envelope)
    assert code == 550 and b"not an allowed sender" in text, text

    data = message(From="someone@elsewhere.example").as_bytes(policy=policy.SMTP)
    code, reply = await in_thread(
        lambda: send(submission, data, sender="app@odiseo.io", recipients=["to@example.com"])
    )
    assert code == 550 and "From: someone@elsewhere.example" in reply, reply
    await submission.nothing_stored()


async def test_too_big_is_552(submission: Submission) -> None:
    limit = submission.app.state.service.submission_limit

    def announced() -> tuple[bytes, int, bytes]:
        with submission.connect() as client:
            client.login("apikey", SEND_KEY)
            size = client.esmtp_features["size"].encode()
            code, text = client.mail("app@odiseo.io", [f"SIZE={limit + 1}"])
            return size, code, text

    size, code, text = await in_thread(announced)
    assert int(size) == limit
    assert code == 552, text

    made = message()
    made.set_content("x" * 70 + "\n", subtype="plain")
    data = made.as_bytes(policy=policy.SMTP).replace(
        b"x" * 70 + b"\r\n", (b"y" * 900 + b"\r\n") * (limit // 900 + 2)
    )
    code, reply = await in_thread(
        lambda: send(submission, data, sender="app@odiseo.io", recipients=["to@example.com"])
    )
    assert code == 552, reply
    await submission.nothing_stored()


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (
            b"From: app@odiseo.io\r\nTo: to@example.com\r\nSubject: s\r\n\r\n"
            + b"z" * 999
            + b"\r\n",
            "999 octets",
        ),
        (b"From: app@odiseo.io\r\nTo: to@example.com\r\nSubject: s\r\n\r\nbare\nLF\r\n", "bare LF"),
        (b"From: app@odiseo.io\r\nTo: to@example.com\r\nSubject: s\r\n\r\nbare\rCR\r\n", "bare CR"),
        (b"To: to@example.com\r\nSubject: s\r\n\r\nno From\r\n", "one From field"),
        (
            b"From: app@odiseo.io\r\nTo: to@example.com\r\nSubject: s\r\nMIME-Version: 1.0\r\n"
            b'Content-Type: multipart/mixed; boundary="b"\r\n\r\nno parts\r\n',
            "does not parse cleanly",
        ),
    ],
)
async def test_broken_message_is_554(submission: Submission, data: bytes, why: str) -> None:
    code, reply = await in_thread(
        lambda: send(submission, data, sender="app@odiseo.io", recipients=["to@example.com"])
    )
    assert code == 554 and why in reply, reply
    await submission.nothing_stored()


async def test_recipient_limit_and_bad_address(submission: Submission) -> None:
    def envelope() -> list[tuple[int, bytes]]:
        with submission.connect() as client:
            client.login("apikey", SEND_KEY)
            client.mail("app@odiseo.io")
            return [client.rcpt("not an address@"), client.rcpt("@example.com")]

    replies = await in_thread(envelope)
    assert all(code in {501, 553} for code, _ in replies), replies


@pytest.mark.parametrize("submission_overrides", [{"smtp_submission_max_recipients": 2}])
async def test_too_many_recipients_is_452(submission: Submission) -> None:
    def envelope() -> list[int]:
        with submission.connect() as client:
            client.login("apikey", SEND_KEY)
            client.mail("app@odiseo.io")
            return [client.rcpt(f"r{i}@example.com")[0] for i in range(3)]

    assert await in_thread(envelope) == [250, 250, 452]


@pytest.mark.parametrize("submission_overrides", [{"smtp_submission_host": "0.0.0.0"}])
async def test_plaintext_auth_beyond_loopback_is_538(submission: Submission) -> None:
    def plain() -> tuple[int, bytes]:
        with submission.connect(starttls=False) as client:
            assert "auth" not in client.esmtp_features  # not offered before TLS
            return client.docmd("AUTH", "PLAIN AGFwaWtleQBzZWNyZXQ=")

    code, text = await in_thread(plain)
    assert code == 538, text

    def after_tls() -> int:
        with submission.connect() as client:
            return client.login("apikey", SEND_KEY)[0]

    assert await in_thread(after_tls) == 235


async def test_plaintext_auth_on_loopback_is_accepted(submission: Submission) -> None:
    def plain() -> int:
        with submission.connect(starttls=False) as client:
            return client.login("apikey", SEND_KEY)[0]

    assert await in_thread(plain) == 235


@pytest.mark.parametrize("submission_overrides", [{"rate_limit_per_minute": 1}])
async def test_rate_limit_per_key_is_451(submission: Submission) -> None:
    def three() -> list[tuple[int, bytes]]:
        with submission.connect() as client:
            client.login("apikey", SEND_KEY)
            replies = []
            for _ in range(3):  # three in a row cannot span two minute boundaries
                replies.append(client.mail("app@odiseo.io"))
                client.rset()
            return replies

    replies = await in_thread(three)
    assert replies[0][0] == 250, replies
    limited = [text for code, text in replies[1:] if code == 451]
    assert limited and b"rate limit of 1 messages per minute" in limited[0], replies


def dkim_key() -> tuple[str, bytes]:
    """(PEM private key, its DNS TXT record) of a fresh RSA key."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return pem.decode(), b"v=DKIM1; k=rsa; p=" + base64.b64encode(public)


DKIM_PEM, DKIM_RECORD = dkim_key()


@pytest.mark.parametrize(
    "submission_overrides",
    [{"dkim_domain": "odiseo.io", "dkim_selector": "s1", "dkim_private_key": DKIM_PEM}],
)
async def test_the_pipeline_applies_suppression_dkim_and_events(submission: Submission) -> None:
    await submission.app.state.outcomes.suppress(
        "gone@example.com", reason=SuppressionReason.MANUAL, detail=None, now=datetime.now(UTC)
    )
    data = message(To="to@example.com, gone@example.com").as_bytes(policy=policy.SMTP)
    code, reply = await in_thread(
        lambda: send(
            submission,
            data,
            sender="app@odiseo.io",
            recipients=["to@example.com", "gone@example.com"],
        )
    )
    assert code == 250, reply
    found = QUEUED.search(reply)
    assert found, reply

    await submission.deliver()
    (received,) = submission.received
    assert received.recipients == ["to@example.com"]  # the suppressed one skipped

    def lookup(name: bytes, timeout: int = 5) -> bytes:
        assert name == b"s1._domainkey.odiseo.io."
        return DKIM_RECORD

    assert dkim.verify(received.data, dnsfunc=lookup)
    stored = await submission.read(found[1])
    types = {(e["type"], e["recipient"]) for e in stored["events"] if e["type"]}
    assert ("email.sent", None) in types and ("email.suppressed", "gone@example.com") in types
