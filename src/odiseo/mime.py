"""Turn an OutgoingEmail into RFC 5322 bytes, and HTML into text.

Pure: no I/O. The Message-ID comes from the stored email, so every attempt of
one message carries the same one.

Messages are written straight to bytes rather than through
`email.message.EmailMessage`, whose folding and quoted-printable encoding cost
several milliseconds a message. The rules kept here: CRLF line ends; headers
in ASCII, with RFC 2047 encoded-words for anything else; bodies as 7bit when
they are ASCII with lines of at most 998 octets, otherwise base64 in 76-column
lines; boundaries that occur nowhere in the parts they separate.
"""

from __future__ import annotations

import base64
import html as htmllib
import re
from collections.abc import Iterable
from datetime import datetime
from email.header import Header
from email.utils import format_datetime, formataddr

import idna

from odiseo.domain.models import Attachment, OutgoingEmail

# -- HTML to text -------------------------------------------------------------------

_DROP = re.compile(r"<(script|style|head|title)\b[^>]*>.*?</\1\s*>", re.I | re.S)
_COMMENT = re.compile(r"<!--.*?-->", re.S)
_LINK = re.compile(
    r"""<a\b[^>]*?\bhref\s*=\s*["']?((?:https?://|mailto:)[^"'\s>]+)["']?[^>]*>(.*?)</a\s*>""",
    re.I | re.S,
)
_BREAK = re.compile(r"<br\s*/?>", re.I)
_ITEM = re.compile(r"<li\b[^>]*>", re.I)
_BLOCK = re.compile(  # address article aside blockquote div dl dt dd fieldset … tr ul, as a trie
    r"</?(?:address|article|aside|blockquote|d(?:iv|[ldt])|f(?:ieldset|igcaption|igure|ooter|orm)"
    r"|h(?:[1-6r]|eader)|main|nav|ol|p(?:re)?|section|t(?:able|r)|ul)\b[^>]*>",
    re.I,
)
_TAG = re.compile(r"<[^>]*>")
_SPACES = re.compile(r"[ \t\r\f\v]{2,}|[\t\r\f\v]")  # single spaces stay as they are
_BLANK_LINES = re.compile(r"\n\s*\n\s*\n+")


def _link_text(match: re.Match[str]) -> str:
    return f"{match.group(2)} ({match.group(1).removeprefix('mailto:')})"


def html_to_text(html: str) -> str:
    """A plain-text rendering of an HTML body, for the text/plain alternative."""
    text = _COMMENT.sub("", _DROP.sub("", html))
    text = _LINK.sub(_link_text, text.replace("\n", " ").replace("\r", " "))
    text = _BREAK.sub("\n", text)
    text = _ITEM.sub("\n- ", text)
    text = _BLOCK.sub("\n\n", text)
    text = htmllib.unescape(_TAG.sub("", text))
    lines = (line.strip() for line in _SPACES.sub(" ", text).split("\n"))
    return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip() + "\n"


# -- addresses -------------------------------------------------------------------------


def ascii_address(address: str) -> str:
    """The address with its domain in IDNA (xn--) form, as SMTP without SMTPUTF8 needs.

    Raises:
        ValueError: a non-ASCII local part, which only SMTPUTF8 servers could take.
    """
    local, _, domain = address.rpartition("@")
    if not local.isascii():
        raise ValueError("non-ASCII before the @ needs SMTPUTF8, which Odiseo does not use")
    if domain.isascii():
        return address
    try:
        return f"{local}@{idna.encode(domain, uts46=True).decode('ascii')}"
    except idna.IDNAError as exc:
        raise ValueError(f"invalid international domain: {exc}") from None


def format_address(email: str, name: str | None = None) -> str:
    """An address header value, with a display name quoted or RFC 2047 encoded as needed."""
    return formataddr((name, email), charset="utf-8") if name else email


# -- building ----------------------------------------------------------------------------

_CRLF = b"\r\n"
_MAX_LINE = 998


def _header(name: str, value: str) -> bytes:
    """`Name: value` folded to RFC 5322, encoded-words for non-ASCII values."""
    if value.isascii() and len(name) + len(value) < 76:
        return f"{name}: {value}\r\n".encode("ascii")
    charset = "us-ascii" if value.isascii() else "utf-8"
    folded = Header(value, charset, header_name=name).encode(linesep="\r\n")
    return f"{name}: {folded}\r\n".encode("ascii")


def _address_header(name: str, addresses: Iterable[str]) -> bytes:
    joined = ", ".join(addresses)
    if len(joined) + len(name) < 76:
        return f"{name}: {joined}\r\n".encode("ascii")
    folded = ",\r\n ".join(addresses)
    return f"{name}: {folded}\r\n".encode("ascii")


def _from_header(email: OutgoingEmail) -> bytes:
    if not email.from_name:
        return f"From: {email.from_email}\r\n".encode("ascii")
    name = email.from_name
    if name.isascii():
        return f"From: {formataddr((name, email.from_email))}\r\n".encode("ascii")
    encoded = Header(name, "utf-8", header_name="From").encode(linesep="\r\n")
    return f"From: {encoded} <{email.from_email}>\r\n".encode("ascii")


def _encode_body(data: bytes, *, textual: bool) -> tuple[str, bytes]:
    """(transfer encoding, body bytes with CRLF line ends)."""
    if textual and data.isascii():
        lines = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n")
        if all(len(line) <= _MAX_LINE for line in lines):
            return "7bit", _CRLF.join(lines)
    return "base64", base64.encodebytes(data).replace(b"\n", _CRLF)


def _text_part(content: str, subtype: str) -> bytes:
    encoding, body = _encode_body(content.encode("utf-8"), textual=True)
    charset = "us-ascii" if content.isascii() else "utf-8"
    return (
        f'Content-Type: text/{subtype}; charset="{charset}"\r\n'
        f"Content-Transfer-Encoding: {encoding}\r\n\r\n"
    ).encode("ascii") + body


def _param(name: str, value: str) -> str:
    """A MIME parameter; non-ASCII filenames use RFC 2231."""
    if value.isascii() and '"' not in value and "\\" not in value:
        return f'{name}="{value}"'
    from urllib.parse import quote

    return f"{name}*=utf-8''{quote(value, safe='')}"


def _attachment_part(item: Attachment, *, inline: bool) -> bytes:
    encoding, body = _encode_body(item.data, textual=False)
    disposition = "inline" if inline else "attachment"
    lines = [
        f"Content-Type: {item.content_type}; {_param('name', item.filename)}",
        f"Content-Transfer-Encoding: {encoding}",
        f"Content-Disposition: {disposition}; {_param('filename', item.filename)}",
    ]
    if item.content_id:
        lines.append(f"Content-ID: <{item.content_id}>")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii") + body


def _multipart(subtype: str, parts: list[bytes], seed: str) -> bytes:
    """A multipart entity (its own Content-Type header included) around `parts`."""
    number = 0
    boundary = f"=_{seed}_{subtype}"
    while any(boundary.encode() in part for part in parts):
        number += 1
        boundary = f"=_{seed}_{subtype}_{number}"
    marker = f"--{boundary}".encode("ascii")
    body = b"".join(marker + _CRLF + part + _CRLF for part in parts) + marker + b"--" + _CRLF
    head = f'Content-Type: multipart/{subtype}; boundary="{boundary}"\r\n\r\n'.encode("ascii")
    return head + body


def build_message(email: OutgoingEmail, *, date: datetime) -> bytes:
    """The RFC 5322 message for `email`.

    multipart/alternative (text, HTML); the HTML wrapped in multipart/related with
    its inline images; everything in multipart/mixed when files are attached.
    """
    seed = email.message_id.replace("-", "")
    text = email.text if email.text is not None else html_to_text(email.html or "")
    body = _text_part(text, "plain")
    inline = [a for a in email.attachments if a.content_id] if email.html is not None else []
    files = [a for a in email.attachments if a not in inline]
    if email.html is not None:
        html = _text_part(email.html, "html")
        if inline:
            html = _multipart(
                "related", [html, *(_attachment_part(a, inline=True) for a in inline)], seed
            )
        body = _multipart("alternative", [body, html], seed)
    if files:
        body = _multipart(
            "mixed", [body, *(_attachment_part(a, inline=False) for a in files)], seed
        )
    head = [
        _from_header(email),
        _address_header("To", email.to),
    ]
    if email.cc:
        head.append(_address_header("Cc", email.cc))
    if email.reply_to:
        head.append(_address_header("Reply-To", email.reply_to))
    head += [
        _header("Subject", email.subject),
        f"Date: {format_datetime(date)}\r\n".encode("ascii"),
        f"Message-ID: {email.rfc_message_id}\r\n".encode("ascii"),
    ]
    head += [_header(name, value) for name, value in email.headers]
    head.append(b"MIME-Version: 1.0\r\n")
    return b"".join(head) + body
