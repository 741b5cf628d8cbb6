"""Adaptive throttling: which SMTP replies mean "slow down", and how a scope backs off.

A reply signals rate limiting when its code is 421, 450, 451, 452 or 454 and either
its enhanced status is 4.7.x (Gmail's 4.7.28, Outlook's 4.7.500, Yahoo's 4.7.0
[TSS04]…) or its text says so ("Throttling", "rate limit", "too many connections",
"server busy", "sending rate", "unexpected volume"…); greylisting ("greylisted",
"graylisted") is not throttling, whatever its code. 4.7.1 alone is not either: it is
"delivery not authorized", the code of greylisting that does not name itself, of
reverse-DNS and of blocklist deferrals; such a reply is an ordinary retry of its message,
and never pauses a whole domain. Such a reply at connection,
HELO/EHLO, MAIL or DATA concerns the relay as a whole; at RCPT it concerns the
recipient's domain. STARTTLS and AUTH replies never count (454 4.7.0 there means
TLS or login trouble, not rate).

The back-off rule (README, "Rate limits and throttling"), per scope:

- An onset pauses the scope for `pause * 2**(n-1)` seconds, at most `max_pause`, and
  at least the wait the reply names ("try again in 5 minutes", capped at
  `max_pause`). `n` counts the onsets in a row: an onset while the scope is still
  recovering from the previous one is a repeat (n + 1); after a full recovery n is 1.
- Signals during a pause are echoes of the same onset (replies to messages that were
  already on their way): they change nothing and publish no event.
- After the pause the scope recovers for as long as the pause lasted: it may start
  `1 + floor(10 * elapsed / pause)` messages a second (1 rising to 10), then it is free.
"""

from __future__ import annotations

import enum
import hashlib
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from odiseo.domain.limits import RateLimit

RELAY_STAGES = frozenset({"connect", "HELO", "EHLO", "MAIL", "DATA"})
THROTTLE_CODES = frozenset({421, 450, 451, 452, 454})
RAMP_STEPS = 10  # the recovering rate rises from 1 to this many a second
_ENHANCED_47 = re.compile(r"\s*(?:\d{3}[ -])?\s*4\.7\.(\d{1,3})(?!\d)")
# 4.7.1 is "delivery not authorized": greylisting that does not say so (rspamd's "451
# 4.7.1 Try again later"), reverse-DNS and blocklist deferrals. It counts only with a
# text that says rate.
_NOT_RATE_ALONE = "1"
_TEXTS = re.compile(
    r"throttl|rate[ -]?limit|too many (?:connections|concurrent|sessions|messages|mails)"
    r"|server (?:is )?busy|sending rate|unexpected volume|\bTSS0\d\b"
    r"|(?:daily|sending|message) quota",
    re.IGNORECASE,
)
_GREYLISTING = re.compile(r"gr[ae]y-?list", re.IGNORECASE)


class Scope(enum.StrEnum):
    RELAY = "relay"
    DOMAIN = "domain"


def is_throttle(code: int, text: str) -> bool:
    """Whether an SMTP reply (its code, and its text after the code) asks us to slow down."""
    if code not in THROTTLE_CODES or _GREYLISTING.search(text):
        return False
    found = _ENHANCED_47.match(text) if code != 452 else None
    enhanced = found is not None and found.group(1) != _NOT_RATE_ALONE
    return enhanced or _TEXTS.search(text) is not None


@dataclass(frozen=True, kw_only=True)
class Signal:
    """A reply that asks a scope to slow down."""

    scope: Scope
    domain: str = ""  # the recipient domain (Scope.DOMAIN), "" for the relay
    reply: str  # "421 4.7.0 Try again later"
    wait: float | None = None  # the wait the reply names, seconds


def signals(
    *,
    stage: str | None,
    code: int | None,
    text: str,
    refusals: Iterable[tuple[str, int, str]] = (),
    wait: float | None = None,
) -> list[Signal]:
    """The throttle signals in one delivery's replies: the failure's own reply (at
    `stage`), and each recipient refused at RCPT, as (recipient, code, text)."""
    found = []
    if stage in RELAY_STAGES and code is not None and is_throttle(code, text):
        found.append(Signal(scope=Scope.RELAY, reply=f"{code} {text}", wait=wait))
    for recipient, refused_code, refused_text in refusals:
        if is_throttle(refused_code, refused_text):
            domain = recipient.rpartition("@")[2].lower()
            reply = f"{refused_code} {refused_text}"
            if all(s.domain != domain for s in found):
                found.append(Signal(scope=Scope.DOMAIN, domain=domain, reply=reply, wait=wait))
    return found


@dataclass(frozen=True, kw_only=True)
class Policy:
    pause_seconds: float = 30.0  # THROTTLE_PAUSE_SECONDS (0: adaptive throttling off)
    max_pause_seconds: float = 900.0  # THROTTLE_MAX_PAUSE_SECONDS


@dataclass(frozen=True, kw_only=True)
class Throttle:
    """One scope's back-off: paused until `until`, recovering until `recovered_at`."""

    scope: Scope
    domain: str = ""
    until: datetime
    recovered_at: datetime
    onsets: int  # in a row (n in the rule)
    reply: str

    def paused(self, now: datetime) -> bool:
        return now < self.until

    def active(self, now: datetime) -> bool:
        """Paused or recovering: the scope is slowed."""
        return now < self.recovered_at

    def rate(self, now: datetime) -> int | None:
        """Messages a second the scope may start now: 0 while paused, None once recovered."""
        if now < self.until:
            return 0
        if now >= self.recovered_at:
            return None
        ramp = (self.recovered_at - self.until).total_seconds()
        elapsed = (now - self.until).total_seconds()
        return 1 + int(RAMP_STEPS * elapsed / ramp)


def after_signal(
    current: Throttle | None, signal: Signal, *, now: datetime, policy: Policy
) -> tuple[Throttle, bool]:
    """The scope's back-off after `signal`, and whether it is an onset (an event)."""
    if current is not None and current.paused(now):
        return current, False
    onsets = current.onsets + 1 if current is not None and current.active(now) else 1
    pause = _pause(policy, onsets)
    if signal.wait is not None:
        pause = max(pause, min(signal.wait, policy.max_pause_seconds))
    until = now + timedelta(seconds=pause)
    throttle = Throttle(
        scope=signal.scope,
        domain=signal.domain,
        until=until,
        recovered_at=until + timedelta(seconds=pause),
        onsets=onsets,
        reply=signal.reply,
    )
    return throttle, True


def _pause(policy: Policy, onsets: int) -> float:
    """pause * 2**(onsets-1), at most max_pause: the doubling stops there (a scope
    throttled for days counts thousands of onsets, and 2**n outgrows a float)."""
    first, most = policy.pause_seconds, policy.max_pause_seconds
    if first <= 0 or most <= 0:
        return max(0.0, min(first, most))
    if onsets - 1 >= math.log2(most / first):
        return most
    return float(first * 2 ** (onsets - 1))


def recovery_limit(throttle: Throttle, *, now: datetime) -> RateLimit | None:
    """The per-second limit of a recovering scope, taken like SMTP_MAX_PER_SECOND (its
    row in the shared usage table); None unless it is recovering."""
    rate = throttle.rate(now)
    if not rate:
        return None
    name = f"throttle:{throttle.domain or '@relay'}"
    if len(name) > 64:  # the usage table's key: long domains by digest
        name = "throttle:#" + hashlib.sha256(throttle.domain.encode()).hexdigest()[:40]
    return RateLimit(name=name, seconds=1, count=rate, domain=throttle.domain or None)
