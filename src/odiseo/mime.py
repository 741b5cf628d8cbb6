"""Turn an OutgoingEmail into a standard-library EmailMessage, and HTML into text.

Pure: no I/O. The Message-ID comes from the stored email, so every attempt of
one message carries the same one.
"""

from __future__ import annotations

import re
from datetime import datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime
from html.parser import HTMLParser

import idna

from odiseo.domain.models import Attachment, OutgoingEmail

_BLOCK_TAGS = frozenset(
    [
        "address",
        "article",
        "aside",
        "blockquote",
        "div",
        "dl",
        "dt",
        "dd",
        "fieldset",
        "figcaption",
        "figure",
        "footer",
        "form",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "header",
        "hr",
        "li",
        "main",
        "nav",
        "ol",
        "p",
        "pre",
        "section",
        "table",
        "tr",
        "ul",
    ]
)
_SKIP_TAGS = frozenset({"script", "style", "head", "title"})
_SPACES = re.compile(r"[ \t\r\f\v]+")
_BLANK_LINES = re.compile(r"\n\s*\n\s*\n+")


class _TextExtractor(HTMLParser):
    """Collects readable text: block elements become line breaks, links keep their target."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skipping = 0
        self._links: list[str | None] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIP_TAGS:
            self._skipping += 1
        elif tag == "br":
            self.parts.append("\n")
        elif tag in _BLOCK_TAGS:
            self.parts.append("\n\n" if tag != "li" else "\n- ")
        elif tag == "a":
            self._links.append(dict(attrs).get("href"))

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP_TAGS:
            self._skipping = max(0, self._skipping - 1)
        elif tag in _BLOCK_TAGS:
            self.parts.append("\n")
        elif tag == "a" and self._links:
            href = self._links.pop()
            if href and href.startswith(("http://", "https://", "mailto:")):
                self.parts.append(f" ({href.removeprefix('mailto:')})")

    def handle_data(self, data: str) -> None:
        if not self._skipping:
            self.parts.append(_SPACES.sub(" ", data.replace("\n", " ")))


def html_to_text(html: str) -> str:
    """A plain-text rendering of an HTML body, for the text/plain alternative."""
    extractor = _TextExtractor()
    extractor.feed(html)
    extractor.close()
    lines = (line.strip() for line in "".join(extractor.parts).split("\n"))
    text = "\n".join(lines)
    return _BLANK_LINES.sub("\n\n", text).strip() + "\n"


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
    """An address header value, with a display name encoded per RFC 2047 when needed."""
    if not name:
        return email
    local, _, domain = email.rpartition("@")
    return str(Address(display_name=name, username=local, domain=domain))


def build_message(email: OutgoingEmail, *, date: datetime) -> EmailMessage:
    """The RFC 5322 message for `email`: multipart/alternative text + HTML."""
    message = EmailMessage(policy=SMTP)
    message["From"] = format_address(email.from_email, email.from_name)
    message["To"] = ", ".join(email.to)
    if email.cc:
        message["Cc"] = ", ".join(email.cc)
    if email.reply_to:
        message["Reply-To"] = ", ".join(email.reply_to)
    message["Subject"] = email.subject
    message["Date"] = format_datetime(date)
    message["Message-ID"] = email.rfc_message_id
    for name, value in email.headers:
        message[name] = value
    text = email.text if email.text is not None else html_to_text(email.html or "")
    message.set_content(text)
    if email.html is not None:
        message.add_alternative(email.html, subtype="html")
    _attach(message, email.attachments)
    for part in message.walk():
        if part is not message:
            del part["MIME-Version"]  # only the top level carries it
    return message


def _attach(message: EmailMessage, attachments: tuple[Attachment, ...]) -> None:
    """Inline files join the HTML in multipart/related; the others make the message mixed."""
    html = message.get_body(("html",)) if message.is_multipart() else None
    for item in attachments:
        maintype, _, subtype = item.content_type.partition("/")
        if item.content_id and isinstance(html, EmailMessage):
            html.add_related(
                item.data,
                maintype=maintype,
                subtype=subtype,
                cid=f"<{item.content_id}>",
                filename=item.filename,
                disposition="inline",
            )
    for item in attachments:
        if item.content_id and isinstance(html, EmailMessage):
            continue
        maintype, _, subtype = item.content_type.partition("/")
        message.add_attachment(
            item.data, maintype=maintype, subtype=subtype, filename=item.filename
        )
