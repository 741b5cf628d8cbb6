"""A worker's side of adaptive throttling (domain/throttle.py has the rule).

Every worker reads the shared back-off of each slowed scope (the `throttles` table) at
most once a second, when it claims: with nothing throttled that read is the only cost,
never one per batch or per message. A throttle reply is written at once (one short
transaction, which also publishes relay.throttled / domain.throttled on an onset), and
this worker's view is updated without waiting for the next read.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

from odiseo.domain.limits import RateLimit, domain_of
from odiseo.domain.models import QueuedEmail, Refusal
from odiseo.domain.throttle import Policy, Scope, Throttle, recovery_limit, signals
from odiseo.errors import DeliveryFailure, StoreUnavailable
from odiseo.metrics import Metrics
from odiseo.storage.contract import Limits

log = logging.getLogger(__name__)

REFRESH = timedelta(seconds=1)


class Throttling:
    """The throttles this worker knows of, and the signals it reports."""

    def __init__(
        self,
        limits: Limits,
        *,
        metrics: Metrics,
    ) -> None:
        self.limits = limits
        self.metrics = metrics
        self._known: dict[tuple[Scope, str], Throttle] = {}
        self._read_at: datetime | None = None

    async def refresh(self, now: datetime) -> None:
        """Read the shared throttles if the last read is a second old (or never was, or
        the clock has stepped back since: else no read until it caught up again)."""
        if self._read_at is not None and timedelta(0) <= now - self._read_at < REFRESH:
            return
        self._read_at = now
        current = await self.limits.throttles(now=now)
        read = {(t.scope, t.domain): t for t in current}
        # A sender may have recorded a newer onset while this read was on its way: the
        # read's snapshot does not undo it.
        for key, known in self._known.items():
            if known.active(now) and (key not in read or known.until > read[key].until):
                read[key] = known
        self._known = read
        self.metrics.observe_throttles([(t.scope.value, t.domain) for t in read.values()])

    def relay(self, now: datetime) -> Throttle | None:
        """The relay's throttle, while it is paused or recovering."""
        throttle = self._known.get((Scope.RELAY, ""))
        return throttle if throttle is not None and throttle.active(now) else None

    def relay_limits(self, now: datetime) -> tuple[RateLimit, ...]:
        throttle = self.relay(now)
        limit = None if throttle is None else recovery_limit(throttle, now=now)
        return () if limit is None else (limit,)

    def paused_domains(self, now: datetime) -> list[str]:
        return [t.domain for t in self._known.values() if t.scope is Scope.DOMAIN and t.paused(now)]

    def domain_limits(self, now: datetime) -> tuple[RateLimit, ...]:
        """A per-second limit for each recovering domain."""
        limits = (
            recovery_limit(t, now=now) for t in self._known.values() if t.scope is Scope.DOMAIN
        )
        return tuple(limit for limit in limits if limit is not None)

    def holds(self, message: QueuedEmail, now: datetime) -> bool:
        """Whether a claimed message must wait: the relay or one of its domains is paused."""
        if not self._known:
            return False
        relay = self.relay(now)
        if relay is not None and relay.paused(now):
            return True
        paused = set(self.paused_domains(now))
        return bool(paused) and any(domain_of(r) in paused for r in message.email.recipients)

    async def report(
        self,
        failure: DeliveryFailure | None,
        refused: Sequence[tuple[str, int, str]] = (),
        *,
        policy: Policy,
        clock: Callable[[], datetime],
    ) -> datetime | None:
        """Apply the throttle signals of a delivery's replies; the end of the longest pause
        they concern (when the message may go again), or None if none signals."""
        found = signals(
            stage=failure.stage if failure is not None else None,
            code=failure.code if failure is not None else None,
            text=(failure.reply or "") if failure is not None else "",
            refusals=refused,
            wait=failure.retry_after if failure is not None else None,
        )
        if not found:
            return None
        until = None
        for signal in found:
            self.metrics.throttle_signals.labels(scope=signal.scope.value).inc()
            now = clock()
            try:
                throttle, onset = await self.limits.throttled(signal, now=now, policy=policy)
            except StoreUnavailable as exc:
                log.warning("cannot record a throttle reply: %s", exc)
                continue
            self._known[(throttle.scope, throttle.domain)] = throttle
            until = throttle.until if until is None else max(until, throttle.until)
            if onset:
                log.warning(
                    "%s throttled until %s: %s",
                    signal.domain or "relay",
                    throttle.until.isoformat(),
                    signal.reply,
                )
        return until


def refusals_of(refused: Sequence[Refusal]) -> list[tuple[str, int, str]]:
    """Each recipient refused at RCPT as (recipient, code, text after the code)."""
    return [(r.recipient, r.code, _text(r.code, r.response)) for r in refused]


def _text(code: int, response: str) -> str:
    prefix = str(code)
    return response[len(prefix) :].lstrip(" -") if response.startswith(prefix) else response
