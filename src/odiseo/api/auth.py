"""API keys with scopes, checked in constant time, and per-key rate limits.

Keys come from API_KEYS (comma-separated) and API_KEYS_FILE (one per line);
each may carry scopes as `key:send+read`. A key without scopes has them all.
Keys are kept only as SHA-256 digests and named in logs by a short prefix of it.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from fastapi import Depends, HTTPException, Request, status

from odiseo.api.audit import ACTOR
from odiseo.errors import ConfigError

log = logging.getLogger(__name__)


class Scope(enum.StrEnum):
    SEND = "send"  # POST /emails, /emails/batch
    READ = "read"  # GET emails, queue status, templates, previews
    ADMIN = "admin"  # templates, retry, cancel, reschedule


@dataclass(frozen=True)
class ApiKey:
    digest: bytes
    scopes: frozenset[Scope]

    @property
    def label(self) -> str:
        """What logs and the rate limiter call this key: never the key itself."""
        return "key#" + self.digest.hex()[:8]

    @property
    def scope_id(self) -> str:
        """The namespace of this key's client_message_ids: another key never sees it, and a
        rotated key (a new secret) starts a new one. 96 bits of the digest, not the key."""
        return self.digest.hex()[:24]


def idempotency_scope(request: Request) -> str:
    """The namespace of the calling key's client_message_ids ('' without keys)."""
    key: ApiKey | None = getattr(request.state, "api_key", None)
    return key.scope_id if key is not None else ""


class KeyRing:
    """The configured keys; empty means the API is open (see ALLOW_UNAUTHENTICATED)."""

    def __init__(self, keys: list[ApiKey]) -> None:
        self.keys = keys

    @property
    def enabled(self) -> bool:
        return bool(self.keys)

    @classmethod
    def parse(cls, entries: list[str]) -> KeyRing:
        keys = []
        for entry in entries:
            secret, _, scope_text = entry.strip().partition(":")
            if not secret:
                continue
            if len(secret) < 16:
                raise ConfigError("API_KEYS: every key must be at least 16 characters long")
            try:
                scopes = frozenset(Scope(s) for s in scope_text.split("+")) if scope_text else None
            except ValueError:
                raise ConfigError(
                    "API_KEYS: scopes are send, read and admin, joined with + (key:send+read)"
                ) from None
            keys.append(ApiKey(_digest(secret), scopes or frozenset(Scope)))
        return cls(keys)

    @classmethod
    def from_sources(cls, inline: str, file: Path | None) -> KeyRing:
        entries = inline.split(",") if inline else []
        if file is not None:
            try:
                lines = file.read_text().splitlines()
            except OSError as exc:
                raise ConfigError(f"API_KEYS_FILE: cannot read it: {exc.strerror}") from None
            entries += [line for line in lines if line.strip() and not line.strip().startswith("#")]
        return cls.parse(entries)

    def find(self, token: str) -> ApiKey | None:
        """The key matching `token`; every key is compared, in constant time each."""
        digest = _digest(token)
        found = None
        for key in self.keys:
            if hmac.compare_digest(key.digest, digest):
                found = key
        return found


def _digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


# The attribute that marks a key-checking dependency with its scope: api/openapi.py
# documents the routes that have one, and the tests find them by it.
SCOPE_MARK = "odiseo_scope"


def requires(scope: Scope) -> Callable[..., Awaitable[ApiKey | None]]:
    """A dependency admitting requests whose key has `scope` (everything when no keys exist).

    The Authorization header is read here rather than through fastapi.security's
    HTTPBearer, a nested dependency FastAPI would solve on every request (its cost
    is in bench/README.md); api/openapi.py declares the scheme in the document instead.
    """

    async def check(request: Request) -> ApiKey | None:
        ring: KeyRing = request.app.state.keys
        if not ring.enabled:
            if scope is Scope.ADMIN:
                setattr(request.state, ACTOR, "keyless")
            return None
        token = _bearer_token(request)
        if token is None:
            raise _unauthorized("missing API key: send Authorization: Bearer <key>")
        key = ring.find(token)
        if key is None:
            raise _unauthorized("wrong API key")
        if scope not in key.scopes:
            raise HTTPException(status.HTTP_403_FORBIDDEN, f"this API key lacks the {scope} scope")
        await _rate_limit(request, key)
        request.state.api_key = key
        if scope is Scope.ADMIN:
            setattr(request.state, ACTOR, key.label)
        return key

    setattr(check, SCOPE_MARK, scope)
    return check


def _bearer_token(request: Request) -> str | None:
    """The credentials of an `Authorization: Bearer <key>` header (scheme in any case)."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token if scheme.lower() == "bearer" and token else None


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(
        status.HTTP_401_UNAUTHORIZED, detail, headers={"WWW-Authenticate": "Bearer"}
    )


async def _rate_limit(request: Request, key: ApiKey) -> None:
    limit: int = request.app.state.settings.rate_limit_per_minute
    if limit <= 0:
        return
    now = time.time()
    window = math.floor(now / 60)
    hits = await request.app.state.service.count_request(key.label, window=window)
    if hits > limit:
        retry_after = max(1, math.ceil((window + 1) * 60 - now))
        log.warning("rate limit: %s made %d requests this minute", key.label, hits)
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            f"rate limit of {limit} requests per minute reached; retry in {retry_after} s",
            headers={"Retry-After": str(retry_after)},
        )


check_send = requires(Scope.SEND)  # run by both routes of POST /emails (routes/emails.py)
SendKey = Depends(check_send)
ReadKey = Depends(requires(Scope.READ))
AdminKey = Depends(requires(Scope.ADMIN))
