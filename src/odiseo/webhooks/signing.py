"""Standard Webhooks signatures: `v1,<base64 HMAC-SHA256 of "id.timestamp.body">`.

A secret is `whsec_` and the base64 of its key bytes, as the specification and its
libraries (the `standardwebhooks` package the tests verify with) write it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets as random

PREFIX = "whsec_"
KEY_BYTES = 32


def new_secret() -> str:
    """A fresh signing secret, shown to its owner once."""
    return PREFIX + base64.b64encode(random.token_bytes(KEY_BYTES)).decode()


def sign(secret: str, *, webhook_id: str, timestamp: int, body: bytes) -> str:
    """One `v1,…` signature of a delivery with `secret`."""
    key = base64.b64decode(secret.removeprefix(PREFIX))
    signed = f"{webhook_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def headers(
    secrets: tuple[str, ...], *, webhook_id: str, timestamp: int, body: bytes
) -> dict[str, str]:
    """The Standard Webhooks headers: a signature by every active secret, space-separated
    (while a rotation overlaps, receivers holding either secret can verify)."""
    signatures = " ".join(
        sign(secret, webhook_id=webhook_id, timestamp=timestamp, body=body) for secret in secrets
    )
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signatures,
        "content-type": "application/json",
    }
