"""Check a webhook delivery as Standard Webhooks sign it (https://www.standardwebhooks.com):
HMAC-SHA256 of "{webhook-id}.{webhook-timestamp}.{body}" with the endpoint's secret."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from typing import Any

from odiseo_client.errors import WebhookVerificationError

TOLERANCE_SECONDS = 300  # a delivery signed longer ago (or ahead) than this is refused


def verify_webhook(
    headers: Mapping[str, str],
    body: bytes | str,
    secret: str,
    *,
    tolerance: float = TOLERANCE_SECONDS,
    now: float | None = None,
) -> Any:
    """The delivery's JSON payload if it is signed with `secret` (the `whsec_...` value
    create_webhook gave) and recent; else WebhookVerificationError.

    Pass the body exactly as received (bytes), before any JSON parsing.
    """
    lower = {k.lower(): v for k, v in headers.items()}
    try:
        message_id = lower["webhook-id"]
        stamp = lower["webhook-timestamp"]
        signatures = lower["webhook-signature"]
    except KeyError as exc:
        raise WebhookVerificationError(f"missing header {exc.args[0]}") from None
    try:
        sent_at = int(stamp)
    except ValueError:
        raise WebhookVerificationError("webhook-timestamp is not a number") from None
    if abs((time.time() if now is None else now) - sent_at) > tolerance:
        raise WebhookVerificationError("webhook-timestamp is too old or in the future")
    raw = body.encode() if isinstance(body, str) else body
    signed = f"{message_id}.{stamp}.".encode() + raw
    expected = base64.b64encode(hmac.new(_key(secret), signed, hashlib.sha256).digest())
    for candidate in signatures.split():
        version, _, value = candidate.partition(",")
        if version == "v1" and hmac.compare_digest(value.encode(), expected):
            return json.loads(raw)
    raise WebhookVerificationError("no signature matches this secret")


def _key(secret: str) -> bytes:
    try:
        return base64.b64decode(secret.removeprefix("whsec_"), validate=True)
    except (binascii.Error, ValueError):
        raise WebhookVerificationError("the secret is not a whsec_ base64 value") from None
