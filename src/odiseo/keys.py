"""API keys with scopes, kept as SHA-256 digests and checked in constant time.

Keys come from API_KEYS (comma-separated) and API_KEYS_FILE (one per line);
each may carry scopes as `key:send+read`. A key without scopes has them all.
Keys are named in logs by a short prefix of their digest. The HTTP API
(api/auth.py) and the SMTP submission listener (smtp/) check the same ring.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
from dataclasses import dataclass
from pathlib import Path

from odiseo.errors import ConfigError


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
