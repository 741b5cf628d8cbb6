"""An OutgoingEmail as RFC 5322 / MIME bytes. Pure: no I/O.

The Message-ID comes from the stored email, so every attempt of one message
carries the same one. Headers are written by `headers`, which guarantees their
form; bodies are CRLF-terminated and encoded so that no line passes 998 octets:
7bit when they are ASCII and short-lined, quoted-printable for other text (base64
when that is shorter, as for most non-Latin scripts), base64 for attachments,
which must arrive byte for byte. Boundaries occur nowhere in the parts they
separate. Every header block is checked once written (`headers.check_block`).
"""

from __future__ import annotations

import base64
import binascii
from datetime import UTC, datetime
from email.utils import format_datetime

from odiseo.domain.models import Attachment, OutgoingEmail
from odiseo.errors import InvalidEmail
from odiseo.mime.headers import (
    CONTENT_ID,
    MEDIA_TYPE,
    address_list,
    check_address,
    check_block,
    check_name,
    mailbox,
    parameterised,
    unstructured,
)
from odiseo.mime.text import html_to_text

_CRLF = b"\r\n"
_MAX_LINE = 998
# Fields the writer sets itself; a request's `headers` cannot add or replace them.
RESERVED_HEADERS = frozenset(
    {
        "from", "to", "cc", "bcc", "subject", "message-id", "date", "sender", "reply-to",
        "mime-version", "return-path", "dkim-signature", "orig-date",
    }
)  # fmt: skip
# Content-* would change the MIME structure; Resent-* are dates and address lists.
_RESERVED_PREFIXES = ("content-", "resent-")
_CHECK_DATE = datetime(2000, 1, 1, tzinfo=UTC)


def _date_field(date: datetime) -> bytes:
    return f"Date: {format_datetime(date)}\r\n".encode("ascii")


# check_email writes every request's header block with this one date: format it once.
_CHECK_DATE_FIELD = _date_field(_CHECK_DATE)


def check_header_name(name: str) -> None:
    """Raise InvalidEmail unless a request may add a header called `name`."""
    check_name(name)
    lowered = name.lower()
    if lowered in RESERVED_HEADERS or lowered.startswith(_RESERVED_PREFIXES):
        raise InvalidEmail(f"headers: {name} is set by Odiseo and cannot be given")


def check_email(email: OutgoingEmail) -> None:
    """Raise InvalidEmail, naming the field, for anything the writer would refuse.

    It runs the writer's own header code, so what passes here can be built.
    """
    _head(email, date=_CHECK_DATE)
    for item in email.attachments:
        _attachment_head(item, inline=item.content_id is not None)


def build_message(email: OutgoingEmail, *, date: datetime) -> bytes:
    """The RFC 5322 message for `email`.

    multipart/alternative (text, HTML); the HTML wrapped in multipart/related with
    its inline images; everything in multipart/mixed when files are attached.

    A message submitted over SMTP (`email.raw`) is its own bytes, as the application
    wrote them: the submission listener added what it lacked (Message-ID, Date) and
    took Bcc out before storing it.

    Raises:
        InvalidEmail: a value that cannot be written (which the API refuses earlier).
    """
    if email.raw is not None:
        return email.raw
    seed = email.message_id.replace("-", "")
    text = email.text if email.text is not None else html_to_text(email.html or "")
    body = _text_part(text, "plain")
    inline = [a for a in email.attachments if a.content_id] if email.html is not None else []
    files = [a for a in email.attachments if a not in inline]
    if email.html is not None:
        html = _text_part(email.html, "html")
        if inline:
            parts = [html, *(_attachment_part(a, inline=True) for a in inline)]
            html = _multipart("related", parts, seed)
        body = _multipart("alternative", [body, html], seed)
    if files:
        parts = [body, *(_attachment_part(a, inline=False) for a in files)]
        body = _multipart("mixed", parts, seed)
    return _head(email, date=date) + body


def _head(email: OutgoingEmail, *, date: datetime) -> bytes:
    """The message's own header fields, each written once and the block checked."""
    fields = [
        mailbox("From", email.from_email, email.from_name, field="from_email"),
        address_list("To", email.to, field="to"),
    ]
    if email.cc:
        fields.append(address_list("Cc", email.cc, field="cc"))
    if email.reply_to:
        fields.append(address_list("Reply-To", email.reply_to, field="reply_to"))
    for address in email.bcc:  # never written, but sent to: held to the same rule
        check_address("bcc", address)
    fields += [
        unstructured("Subject", email.subject, field="subject"),
        _CHECK_DATE_FIELD if date is _CHECK_DATE else _date_field(date),
        unstructured("Message-ID", email.rfc_message_id),
    ]
    seen: set[str] = set()
    for name, value in email.headers:
        check_header_name(name)
        if name.lower() in seen:  # field names are case-insensitive: X-T and x-t are one
            raise InvalidEmail(f"headers: {name} is given twice (names ignore case)")
        seen.add(name.lower())
        fields.append(unstructured(name, value, field=f"headers.{name}"))
    if email.list_unsubscribe is not None:  # RFC 8058 one-click: both fields, DKIM-signed
        fields.append(unstructured("List-Unsubscribe", f"<{email.list_unsubscribe}>"))
        fields.append(b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n")
    fields.append(b"MIME-Version: 1.0\r\n")
    head = b"".join(fields)
    if check_block(head) != len(fields):
        raise InvalidEmail("message: a header value was written as more than one field")
    return head


def _text_part(content: str, subtype: str) -> bytes:
    try:
        data = content.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidEmail(f"{subtype}: invalid unicode (lone surrogate)") from None
    charset = "us-ascii" if data.isascii() else "utf-8"
    encoding, body = _encode_text(data)
    return (
        f'Content-Type: text/{subtype}; charset="{charset}"\r\n'
        f"Content-Transfer-Encoding: {encoding}\r\n\r\n"
    ).encode("ascii") + body


def _encode_text(data: bytes) -> tuple[str, bytes]:
    """(transfer encoding, body): line ends made CRLF, no line over 998 octets."""
    lines = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    short = data.isascii() and all(len(line) <= _MAX_LINE for line in lines.split(b"\n"))
    if short and b"\0" not in data:
        return "7bit", lines.replace(b"\n", _CRLF)
    quoted = binascii.b2a_qp(lines, quotetabs=False, istext=True, header=False)
    if data.isascii() or len(quoted) <= 4 * ((len(lines) + 2) // 3) * 77 // 76:
        return "quoted-printable", quoted.replace(b"\n", _CRLF)
    return "base64", _base64(lines.replace(b"\n", _CRLF))


def _base64(data: bytes) -> bytes:
    return base64.encodebytes(data).replace(b"\n", _CRLF)


def _attachment_head(item: Attachment, *, inline: bool) -> bytes:
    """The part header of an attachment, checked; raises InvalidEmail for a bad value."""
    if not MEDIA_TYPE.fullmatch(item.content_type):
        raise InvalidEmail(
            f"attachments: content_type {item.content_type!r} is not a type/subtype of "
            "ASCII letters, digits and !#$&^_.+-"
        )
    if item.content_type.lower().startswith(("multipart/", "message/")):
        raise InvalidEmail("attachments: multipart/* and message/* cannot be attached as files")
    params = [("name", item.filename)]
    if item.content_type.lower().startswith("text/"):
        charset = _charset(item.data)
        if charset is not None:
            params.insert(0, ("charset", charset))
    fields = [
        parameterised(f"Content-Type: {item.content_type}", params),
        b"Content-Transfer-Encoding: base64\r\n",
        parameterised(
            f"Content-Disposition: {'inline' if inline else 'attachment'}",
            [("filename", item.filename)],
        ),
    ]
    if item.content_id is not None:
        cid = item.content_id
        if not CONTENT_ID.fullmatch(cid) or len(cid) > 255 or "=?" in cid:
            raise InvalidEmail(
                f"attachments: content_id {cid!r} is not an id-left[@id-right] "
                "of ASCII letters, digits and !#$%&'*+/=?^_`{|}~.- (and no '=?')"
            )
        fields.append(f"Content-ID: <{cid}>\r\n".encode("ascii"))
    head = b"".join(fields)
    check_block(head)
    return head


def _charset(data: bytes) -> str | None:
    """The charset of a text attachment, when its bytes tell: ASCII or UTF-8."""
    if data.isascii():
        return "us-ascii"
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return "utf-8"


def _attachment_part(item: Attachment, *, inline: bool) -> bytes:
    return _attachment_head(item, inline=inline) + _CRLF + _base64(item.data)


def _multipart(subtype: str, parts: list[bytes], seed: str) -> bytes:
    """A multipart entity (its own Content-Type header included) around `parts`."""
    number = 0
    boundary = f"=_{seed}_{subtype}"
    while any(boundary.encode() in part for part in parts):
        number += 1
        boundary = f"=_{seed}_{subtype}_{number}"
    marker = f"--{boundary}".encode("ascii")
    body = b"".join(marker + _CRLF + part + _CRLF for part in parts) + marker + b"--" + _CRLF
    head = f'Content-Type: multipart/{subtype};\r\n boundary="{boundary}"\r\n\r\n'
    return head.encode("ascii") + body
