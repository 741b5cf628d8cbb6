"""One-click unsubscribe (RFC 8058): signed, expiring links on Odiseo's own API.

A message that asks for it (`"unsubscribe": true`, or a tag listed in UNSUBSCRIBE_TAGS)
gets `List-Unsubscribe: <PUBLIC_URL/unsubscribe/TOKEN>` and `List-Unsubscribe-Post:
List-Unsubscribe=One-Click` (both DKIM-signed). The token names the message and its
one recipient, when the link stops working, and an HMAC-SHA256 of those under
UNSUBSCRIBE_SECRET, so nothing needs storing to check it and nobody can forge one
for another address. A POST there suppresses the recipient (reason `unsubscribe`) and
publishes email.unsubscribed; a GET only shows a page with the button, because mail
scanners fetch links and must not unsubscribe anyone.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta

from odiseo.errors import InvalidEmail, InvalidLink

_SIGNATURE_BYTES = 16
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


@dataclass(frozen=True, kw_only=True)
class Unsubscriber:
    """Who a valid link unsubscribes, from which message."""

    message_id: str
    recipient: str


@dataclass(frozen=True, kw_only=True)
class UnsubscribeLinks:
    """Makes and checks the links; built from PUBLIC_URL and UNSUBSCRIBE_SECRET."""

    base_url: str
    secret: bytes
    lifetime: timedelta
    tags: frozenset[str] = frozenset()

    def wanted(self, *, asked: bool, tags: Collection[str]) -> bool:
        """Whether a message asked for the headers, itself or through its tags."""
        return asked or not self.tags.isdisjoint(tags)

    def url(self, *, message_id: str, recipients: tuple[str, ...], now: datetime) -> str:
        """A message's unsubscribe URL; InvalidEmail unless it has one recipient."""
        if len(recipients) != 1:
            raise InvalidEmail(
                "unsubscribe: a message with an unsubscribe link must have exactly one "
                "recipient (the link unsubscribes that recipient); send one per recipient"
            )
        return f"{self.base_url}/unsubscribe/{self.token(message_id, recipients[0], now=now)}"

    def token(self, message_id: str, recipient: str, *, now: datetime) -> str:
        expires = int((now + self.lifetime).timestamp())
        who = _b64(recipient.encode())
        body = f"{message_id}.{expires}.{who}"
        return f"{body}.{self._sign(body)}"

    def check(self, token: str, *, now: datetime) -> Unsubscriber:
        """Who the link unsubscribes; InvalidLink if forged, damaged or expired."""
        parts = token.split(".")
        if len(parts) != 4 or not _UUID.fullmatch(parts[0]) or not parts[1].isdigit():
            raise InvalidLink("this unsubscribe link is damaged")
        body, signature = ".".join(parts[:3]), parts[3]
        if not hmac.compare_digest(signature, self._sign(body)):
            raise InvalidLink("this unsubscribe link is damaged")
        if int(parts[1]) < now.timestamp():
            raise InvalidLink("this unsubscribe link has expired")
        try:
            recipient = base64.urlsafe_b64decode(parts[2] + "=" * (-len(parts[2]) % 4)).decode()
        except (ValueError, UnicodeDecodeError):  # pragma: no cover - signed by us
            raise InvalidLink("this unsubscribe link is damaged") from None
        return Unsubscriber(message_id=parts[0], recipient=recipient)

    def _sign(self, body: str) -> str:
        digest = hmac.new(self.secret, body.encode(), hashlib.sha256).digest()
        return _b64(digest[:_SIGNATURE_BYTES])


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def links_from(
    *, public_url: str | None, secret: str | None, days: int, tags: Collection[str]
) -> UnsubscribeLinks | None:
    """The link maker, or None when PUBLIC_URL or UNSUBSCRIBE_SECRET is not set."""
    if not public_url or not secret:
        return None
    return UnsubscribeLinks(
        base_url=public_url.rstrip("/"),
        secret=secret.encode(),
        lifetime=timedelta(days=days),
        tags=frozenset(tags),
    )
