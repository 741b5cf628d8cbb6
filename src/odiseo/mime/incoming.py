"""A message an application submitted over SMTP: checked, read, and readied to be sent as is.

The application's bytes are what is sent: its MIME structure, encodings and
attachments stay exactly as written. Only the header block is touched, and only
to take out Bcc (its recipients are in the envelope; showing them is the one
thing Bcc forbids) and to add the Message-ID and Date a message must have when
the application gave none (RFC 6409 §8). The stdlib parser (`policy.default`)
reads the header fields Odiseo keeps in its columns and reports the defects
that make a message refused. Pure: no I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from email import policy
from email.errors import MessageDefect
from email.headerregistry import Address
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import format_datetime

from odiseo.errors import InvalidEmail
from odiseo.mime.addresses import ascii_address
from odiseo.mime.headers import check_address

HARD_LINE = 998  # RFC 5322 §2.1.1: octets per line, CRLF excluded
_FIELD_NAME = re.compile(rb"[!-9;-~]+")
_MESSAGE_ID = re.compile(r"<[!-;=?-~]+@[!-;=?-~]+>")  # printable ASCII but < > inside
_MAX_MESSAGE_ID = 255  # the column's width
_PARSER = BytesParser(policy=policy.default)


@dataclass(frozen=True, kw_only=True)
class Submission:
    """A submitted message ready to store: its bytes to send and what its headers say."""

    data: bytes  # Bcc taken out, Message-ID and Date added when missing
    from_email: str
    from_name: str | None
    to: tuple[str, ...]
    cc: tuple[str, ...]
    reply_to: tuple[str, ...]
    subject: str
    rfc_message_id: str


def wire_problem(data: bytes) -> str | None:
    """Why `data` breaks the wire rules (bare CR or LF, a line over 998 octets), or None."""
    lines = data.split(b"\r\n")
    for number, line in enumerate(lines, start=1):
        if b"\r" in line or b"\n" in line:
            which = "CR" if b"\r" in line else "LF"
            return f"line {number} has a bare {which}: lines must end with CRLF (RFC 5322 2.3)"
        if len(line) > HARD_LINE:
            return (
                f"line {number} is {len(line)} octets long; at most {HARD_LINE} are allowed "
                "(RFC 5322 2.1.1): encode long lines (quoted-printable or base64)"
            )
    return None


def read_submission(data: bytes, *, message_id: str, domain: str, date: datetime) -> Submission:
    """Check and read a submitted message; raise InvalidEmail with what is wrong.

    Args:
        message_id: Odiseo's id of the message, for a Message-ID <message_id@domain>
            if the message has none.
        date: the Date to add if the message has none.
    """
    problem = wire_problem(data)
    if problem is not None:
        raise InvalidEmail(problem)
    head, body = _split(data)
    if not head.isascii():
        raise InvalidEmail(
            "header fields must be ASCII (non-ASCII text goes in RFC 2047 encoded-words); "
            "Odiseo does not take SMTPUTF8"
        )
    fields = _fields(head)
    message = _parse(data)
    sender_name, sender = _from(message)
    given_id = _message_id(message)
    added = []
    if given_id is None:
        given_id = f"<{message_id}@{domain}>"
        added.append(f"Message-ID: {given_id}\r\n".encode("ascii"))
    if message.get("date") is None:
        added.append(f"Date: {format_datetime(date)}\r\n".encode("ascii"))
    kept = [f for f in fields if f.split(b":", 1)[0].strip().lower() != b"bcc"]
    return Submission(
        data=b"".join(kept) + b"".join(added) + body,
        from_email=sender,
        from_name=sender_name,
        to=_addresses(message, "to"),
        cc=_addresses(message, "cc"),
        reply_to=_addresses(message, "reply-to"),
        subject=str(message.get("subject", "")),
        rfc_message_id=given_id,
    )


def _split(data: bytes) -> tuple[bytes, bytes]:
    """(header block with its last CRLF, the rest from the blank line on)."""
    if data.startswith(b"\r\n"):
        raise InvalidEmail("the message has no header fields (it starts with a blank line)")
    end = data.find(b"\r\n\r\n")
    if end < 0:  # header fields only, no body
        return data, b""
    return data[: end + 2], data[end + 2 :]


def _fields(head: bytes) -> list[bytes]:
    """The header block as whole fields (each with its folded lines and final CRLF)."""
    fields: list[bytes] = []
    for line in head.split(b"\r\n")[:-1]:
        if line[:1] in (b" ", b"\t"):
            if not fields:
                raise InvalidEmail("the first header line is a continuation (starts with space)")
            fields[-1] += line + b"\r\n"
            continue
        name, colon, _ = line.partition(b":")
        if not colon or not _FIELD_NAME.fullmatch(name):
            raise InvalidEmail(f"header line {line[:40]!r} is not a `Name: value` field")
        fields.append(line + b"\r\n")
    return fields


def _parse(data: bytes) -> EmailMessage:
    """The message as the stdlib reads it; InvalidEmail for any defect it reports."""
    try:
        message = _PARSER.parsebytes(data)
        defects: list[MessageDefect] = [d for part in message.walk() for d in part.defects]
        for name in ("from", "to", "cc", "reply-to", "subject", "message-id", "date"):
            for value in message.get_all(name, []):
                defects += value.defects
    except Exception as exc:  # the parser's own failures on hostile input
        raise InvalidEmail(f"the message cannot be parsed: {type(exc).__name__}") from None
    if defects:
        first = defects[0]
        text = str(first) or type(first).__name__
        raise InvalidEmail(f"the message does not parse cleanly: {type(first).__name__}: {text}")
    assert isinstance(message, EmailMessage)
    return message


def _from(message: EmailMessage) -> tuple[str | None, str]:
    """The one mailbox of the From field: (display name or None, ASCII address)."""
    values = message.get_all("from", [])
    if len(values) != 1:
        raise InvalidEmail(f"the message must have one From field, not {len(values)}")
    mailboxes = values[0].addresses
    if len(mailboxes) != 1:
        raise InvalidEmail("From: must hold exactly one address")
    return mailboxes[0].display_name or None, _address("From", mailboxes[0])


def _message_id(message: EmailMessage) -> str | None:
    values = message.get_all("message-id", [])
    if not values:
        return None
    if len(values) > 1:
        raise InvalidEmail("the message has more than one Message-ID field")
    value = str(values[0]).strip()
    if len(value) > _MAX_MESSAGE_ID or not _MESSAGE_ID.fullmatch(value):
        raise InvalidEmail(
            f"Message-ID: {value[:80]!r} is not a <left@right> id of at most "
            f"{_MAX_MESSAGE_ID} characters (leave it out and Odiseo writes one)"
        )
    return value


def _addresses(message: EmailMessage, name: str) -> tuple[str, ...]:
    found: dict[str, None] = {}
    for value in message.get_all(name, []):
        for address in value.addresses:
            found[_address(name, address)] = None
    return tuple(found)


def _address(name: str, address: Address) -> str:
    try:
        text = ascii_address(address.addr_spec)
    except ValueError as exc:
        raise InvalidEmail(f"{name}: {address.addr_spec!r}: {exc}") from None
    check_address(name, text)
    return text
