"""VERP return paths: each message's envelope sender names it, signed so none is forged.

With BOUNCE_DOMAIN set, a message goes out with the envelope sender (the SMTP `MAIL
FROM`, which becomes the `Return-Path` a bounce is sent to)

    bounces+<message_id>.<tag>@BOUNCE_DOMAIN

where `tag` is the first 10 base32 characters (50 bits) of HMAC-SHA256(BOUNCE_SECRET,
message_id). A bounce to that address names its message without any parsing, and the
bounce listener takes mail only for addresses whose tag checks, so nobody who has not
seen one of our messages can make Odiseo suppress an address. The header `From` is
not touched.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from dataclasses import dataclass

TAG_CHARS = 10
LOCAL_PREFIX = "bounces"
_LOCAL = re.compile(
    rf"{LOCAL_PREFIX}\+([0-9a-f]{{8}}-[0-9a-f]{{4}}-[0-9a-f]{{4}}-[0-9a-f]{{4}}-[0-9a-f]{{12}})"
    rf"\.([a-z2-7]{{{TAG_CHARS}}})",
)


@dataclass(frozen=True, kw_only=True)
class ReturnPaths:
    """Makes and checks the VERP addresses of one bounce domain."""

    domain: str
    secret: bytes

    def address(self, message_id: str) -> str:
        """The envelope sender of the message `message_id`."""
        return f"{LOCAL_PREFIX}+{message_id}.{self._tag(message_id)}@{self.domain}"

    def message_id(self, address: str) -> str | None:
        """The message a return path names, or None unless it is one of ours with a
        tag that checks (case is ignored: some MTAs change it)."""
        local, at, domain = address.strip().strip("<>").rpartition("@")
        if not at or domain.lower().rstrip(".") != self.domain.lower():
            return None
        found = _LOCAL.fullmatch(local.lower())
        if found is None:
            return None
        message_id, tag = found.groups()
        return message_id if hmac.compare_digest(tag, self._tag(message_id)) else None

    def _tag(self, message_id: str) -> str:
        digest = hmac.new(self.secret, message_id.encode(), hashlib.sha256).digest()
        return base64.b32encode(digest).decode().lower()[:TAG_CHARS]
