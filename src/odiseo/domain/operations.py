"""What the dashboard shows of the running service and keeps for itself: sign-ins,
workers' heartbeats, recent activity and failures. Pure data, like models.py."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, kw_only=True)
class UiSession:
    """A dashboard sign-in: its id is the SHA-256 of the cookie's token."""

    id: str
    key_id: str | None  # ApiKey.scope_id of the key signed in with; None without keys
    csrf: str
    created_at: datetime
    expires_at: datetime


@dataclass(frozen=True, kw_only=True)
class WorkerSeen:
    """A delivery worker as its heartbeat last reported it."""

    name: str
    started_at: datetime
    last_seen: datetime
    delivered: int


@dataclass(frozen=True, kw_only=True)
class ActivityCount:
    """How many events of `type` happened in the span that starts at `start`."""

    type: str
    start: datetime
    count: int


@dataclass(frozen=True, kw_only=True)
class LimitUse:
    """A sending limit and what its current window has taken so far."""

    label: str
    used: int
    count: int
    resets_at: datetime  # the start of the next window

    @property
    def exhausted(self) -> bool:
        return self.used >= self.count


@dataclass(frozen=True, kw_only=True)
class RecentFailure:
    """One message given up on, with its reply and its To recipients."""

    at: datetime
    smtp_code: int | None
    response: str | None
    to: tuple[str, ...]


_ADDRESS = re.compile(r"<?[^\s<>@]+@[^\s<>]+>?")
_NUMBERS = re.compile(r"\b(?=[0-9a-fA-F-]*[0-9])[0-9a-fA-F-]{6,}\b")  # ids, queue ids
_REASON_CHARS = 90


def failure_reason(smtp_code: int | None, response: str | None) -> str:
    """What failures are grouped by: the reply with its addresses and ids taken out, so
    the same refusal for many recipients counts as one reason."""
    text = " ".join((response or "").split())
    text = _NUMBERS.sub("…", _ADDRESS.sub("<address>", text))
    if smtp_code is not None and not text.startswith(str(smtp_code)):
        text = f"{smtp_code} {text}"
    return text[:_REASON_CHARS] or "no reply recorded"


def recipient_domain(address: str) -> str:
    return address.rpartition("@")[2].lower() or address.lower()
