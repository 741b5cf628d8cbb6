"""What both report formats share: reading the message and the part it quotes."""

from __future__ import annotations

import email
import email.policy
from email.message import Message
from email.parser import HeaderParser


def parse(raw: bytes) -> Message:
    """The message, parsed leniently: bounces come from every kind of software."""
    return email.message_from_bytes(raw, policy=email.policy.compat32)


def report_part(message: Message, report_type: str, part_type: str) -> Message | None:
    """The `part_type` part of a multipart/report of `report_type`, wherever it is
    nested (some servers wrap the report in another multipart)."""
    for part in message.walk():
        if part.get_content_type() != "multipart/report":
            continue
        if str(part.get_param("report-type", "")).lower() != report_type:
            continue
        for inner in part.walk():
            if inner.get_content_type() == part_type:
                return inner
    return None


def quoted_headers(message: Message) -> Message | None:
    """The headers of the original message a report returns (message/rfc822, or
    text/rfc822-headers when only those are sent back)."""
    for part in message.walk():
        kind = part.get_content_type()
        if kind in ("message/rfc822", "message/global"):
            payload = part.get_payload()
            if isinstance(payload, list) and payload and isinstance(payload[0], Message):
                return payload[0]
        elif kind in ("text/rfc822-headers", "message/global-headers"):
            text = part.get_payload(decode=True)
            if isinstance(text, bytes):
                return HeaderParser().parsestr(text.decode("utf-8", "replace"))
    return None


def message_id_of(headers: Message | None) -> str | None:
    """The Message-ID of quoted headers, angle brackets kept as stored."""
    if headers is None:
        return None
    value = headers.get("Message-ID") or headers.get("X-Original-Message-ID")
    if value is None:
        return None
    value = " ".join(str(value).split())
    if not value:
        return None
    return value if value.startswith("<") else f"<{value}>"


def field_blocks(part: Message) -> list[Message]:
    """The header blocks of a report part: message/delivery-status comes parsed into
    one Message per block; anything else is parsed here from its text."""
    payload = part.get_payload()
    if isinstance(payload, list):
        return [p for p in payload if isinstance(p, Message)]
    text = part.get_payload(decode=True)
    if not isinstance(text, bytes):
        return []
    blocks = text.decode("utf-8", "replace").replace("\r\n", "\n").split("\n\n")
    return [HeaderParser().parsestr(b.strip("\n") + "\n") for b in blocks if b.strip()]


def field(block: Message, name: str) -> str | None:
    """A field's value, unfolded, or None if absent or empty."""
    value = block.get(name)
    if value is None:
        return None
    text = " ".join(str(value).split())
    return text or None


def typed_address(value: str | None) -> str | None:
    """`rfc822; ana@example.com` -> ana@example.com; other address types -> None."""
    if value is None:
        return None
    kind, semicolon, address = value.partition(";")
    if not semicolon:
        address, kind = kind, "rfc822"
    address = address.strip().strip("<>").strip()
    if kind.strip().lower() not in ("rfc822", "utf-8") or "@" not in address:
        return None
    return address
