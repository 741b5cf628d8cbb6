"""The delivery worker: claim -> build -> deliver -> record, with leases and a clean stop.

Six kinds of task run while `Worker.run()` does, each owning its own state:

    claimer ─▶ inbox ─▶ preparer ─▶ ready ─▶ sender x SMTP_POOL_SIZE ─▶ results ─▶ recorder
              ≤ batch    build, sign   ≤ pool   one message at a time          group write
    heartbeat: renews the lease of every message this worker holds (one statement)
    reporting: keeps this worker's row in `workers` (last beat, deliveries) for the dashboard

- The claimer tops the inbox up whenever it is half empty, so the next messages are
  claimed while these are sent; idle, it sleeps until the store wakes it.
- The preparer builds (and signs) the next message for each sender while they talk
  SMTP; a sender takes one, sends it, and hands the result on.
- The recorder writes every result that is waiting as soon as the previous write is
  done: a result is committed a database round trip or two after its SMTP reply.
- One primitive bounds the work at risk: a sender holds a slot of `unsettled`
  (2 x SMTP_POOL_SIZE) from before its SMTP transaction until its result is
  committed. So after a `kill -9` at any instant, the messages that may be sent again
  are those inside an SMTP transaction and those replied but not yet recorded: at
  most 2 x SMTP_POOL_SIZE, typically no more than SMTP_POOL_SIZE.

Adaptive throttling (`throttling.py`, the rule in `domain/throttle.py`): a reply that asks
to slow down pauses the relay (the claimer claims nothing) or a domain (claims skip it,
as for a used-up DOMAIN_LIMITS window); a sender hands back, untried, a claimed message
whose relay or domain is paused; a recovering scope takes per-second tokens like
SMTP_MAX_PER_SECOND.

A message stays `processing`, leased to this worker, from its claim until its result
is recorded (or it is released); the heartbeat keeps those leases alive, so a slow
but healthy worker is never overtaken, and a dead one's messages are claimed again
by another worker once its leases run out. A stop lets each sender finish the
message in hand (within EMAIL_WORKER_SHUTDOWN_SECONDS: an attempt still running then
is cut short), releases what was claimed but never begun or cut short, and records
every result before returning.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from odiseo.domain.bounces import relay_message_id
from odiseo.domain.limits import Grant, RateLimit, domain_of
from odiseo.domain.models import AttemptResult, FailureKind, Outcome, QueuedEmail, Refusal
from odiseo.domain.operations import WorkerSeen
from odiseo.domain.retry import next_attempt_at
from odiseo.domain.throttle import Policy
from odiseo.domain.verp import ReturnPaths
from odiseo.errors import DeliveryFailure, PermanentFailure, StoreUnavailable
from odiseo.metrics import Metrics
from odiseo.mime import build_message
from odiseo.providers.base import Provider, Receipt
from odiseo.storage.contract import Store
from odiseo.throttling import Throttling, refusals_of

log = logging.getLogger(__name__)

DEFAULT_THROTTLE = Policy()


def utcnow() -> datetime:
    return datetime.now(UTC)


def worker_name() -> str:
    """A name unique to this process, shown in locked_by and the attempt log."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


@dataclass(frozen=True, kw_only=True)
class WorkerOptions:
    batch_size: int
    lease_seconds: float
    poll_interval: float
    backoff_seconds: float
    shutdown_seconds: float = 30.0
    concurrency: int = 1  # messages in flight at once (SMTP_POOL_SIZE)
    store_retry_seconds: float = 2.0  # how long to wait while the database is away
    redact_after_send: bool = False  # REDACT_AFTER_SEND: drop a sent message's content
    limits: tuple[RateLimit, ...] = ()  # SMTP_MAX_PER_*: shared by every worker
    domain_limits: tuple[RateLimit, ...] = ()  # DOMAIN_LIMITS: per recipient domain
    throttle: Policy | None = DEFAULT_THROTTLE  # THROTTLE_*: adaptive throttling (None: off)


class Worker:
    """Delivers due messages until told to stop (see the module docstring)."""

    def __init__(
        self,
        *,
        store: Store,
        provider: Provider,
        options: WorkerOptions,
        name: str | None = None,
        clock: Callable[[], datetime] = utcnow,
        metrics: Metrics | None = None,
        sign: Callable[[bytes], Awaitable[bytes]] | None = None,
        return_paths: ReturnPaths | None = None,
    ) -> None:
        self.store = store
        self.provider = provider
        self.options = options
        self.name = name or worker_name()
        self.clock = clock
        self.metrics = metrics or Metrics()
        self.sign = sign
        self.return_paths = return_paths  # BOUNCE_DOMAIN: each message's VERP sender
        self.delivered = 0
        self._stop = asyncio.Event()
        self.throttling = Throttling(store.limits, metrics=self.metrics)

    def stop(self) -> None:
        """Finish the messages in hand, hand back the rest, record everything, return."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    async def stopped(self) -> None:
        """Return once a stop is asked."""
        await self._stop.wait()

    async def run(self) -> None:
        """Deliver until stopped; the provider is closed at the end."""
        log.info("worker %s started (provider %s)", self.name, self.provider.name)
        try:
            await _Run(self, until_idle=False).go()
        finally:
            await self.provider.close()
            log.info("worker %s stopped after %d deliveries", self.name, self.delivered)

    async def run_until_idle(self) -> int:
        """The same loop as `run`, ending once nothing is due and everything claimed is
        recorded (tests, one-shot use); the provider stays open. Deliveries made."""
        before = self.delivered
        self._stop = asyncio.Event()  # each such run ends by stopping itself
        await _Run(self, until_idle=True).go()
        return self.delivered - before

    async def attempt(
        self, message: QueuedEmail, *, prepared: asyncio.Future[bytes] | None = None
    ) -> AttemptResult:
        """One delivery attempt of a claimed message, classified into an outcome.

        Args:
            prepared: the message's bytes, already being built and signed; else built here.
        """
        started = self.clock()
        extra = {"message_id": message.message_id, "attempt": message.attempts}
        if message.expires_at is not None and message.expires_at <= started:
            if prepared is not None:
                _discard(prepared)
            expired = PermanentFailure(
                f"expired: not sent by {message.expires_at.isoformat()}", reason="expired"
            )
            return self._failed(message, expired, started=started)
        recipients = _unsuppressed(message)
        if not recipients:
            if prepared is not None:
                _discard(prepared)
            return self._suppressed(message, started=started)
        try:
            data = await (prepared or self.prepare(message, date=started))
            with self.metrics.provider_call.time():
                receipt = await self.provider.deliver(
                    data,
                    sender=self.envelope_sender(message),
                    recipients=recipients,
                    message_id=message.message_id,
                )
        except DeliveryFailure as failure:
            until = await self._throttle_signals(failure, failure.refusals)
            if until is not None:
                return self._throttled(message, failure, started=started, until=until)
            return self._failed(message, failure, started=started)
        except Exception as exc:  # a message we cannot even build: retrying will not help
            log.exception("cannot build message", extra=extra)
            unbuildable = PermanentFailure(f"cannot build message: {type(exc).__name__}: {exc}")
            return self._failed(message, unbuildable, started=started)
        self.delivered += 1
        if receipt.refused:
            await self._throttle_signals(None, receipt.refused)
        finished = self.clock()
        self.metrics.sent.inc()
        self.metrics.delivery_latency.observe((finished - message.created_at).total_seconds())
        log.info("sent: %s", _receipt_text(receipt), extra={**extra, "status": "sent"})
        return AttemptResult(
            email_id=message.id,
            message_id=message.message_id,
            attempt=message.attempts,
            outcome=Outcome.SENT,
            started_at=started,
            finished_at=finished,
            smtp_code=receipt.code,
            response=_receipt_text(receipt),
            accepted=_accepted(recipients, receipt),
            refused=receipt.refused,
            suppressed=message.suppressed,
            relay_message_id=relay_message_id(receipt.response),
        )

    def envelope_sender(self, message: QueuedEmail) -> str:
        """`MAIL FROM`: the message's VERP return path with BOUNCE_DOMAIN, else its From."""
        if self.return_paths is None:
            return message.email.from_email
        return self.return_paths.address(message.message_id)

    def _suppressed(self, message: QueuedEmail, *, started: datetime) -> AttemptResult:
        """Every recipient is on the suppression list: the message ends, untried."""
        log.info(
            "suppressed: every recipient is on the suppression list",
            extra={"message_id": message.message_id, "status": Outcome.SUPPRESSED.value},
        )
        self.metrics.suppressed.inc()
        return AttemptResult(
            email_id=message.id,
            message_id=message.message_id,
            attempt=message.attempts,
            outcome=Outcome.SUPPRESSED,
            started_at=started,
            finished_at=self.clock(),
            response="every recipient is on the suppression list",
            suppressed=message.suppressed,
        )

    async def prepare(self, message: QueuedEmail, *, date: datetime) -> bytes:
        """The bytes to send: the message built, and signed when DKIM is on."""
        data = build_message(message.email, date=date)
        if self.sign is not None:
            data = await self.sign(data)
        return data

    async def _throttle_signals(
        self, failure: DeliveryFailure | None, refused: tuple[Refusal, ...]
    ) -> datetime | None:
        """Report the replies that ask to slow down (adaptive throttling); the end of the
        pause they concern, or None."""
        policy = self.options.throttle
        if policy is None or (failure is None and not refused):
            return None
        return await self.throttling.report(
            failure, refusals_of(refused), policy=policy, clock=self.clock
        )

    def _throttled(
        self, message: QueuedEmail, failure: DeliveryFailure, *, started: datetime, until: datetime
    ) -> AttemptResult:
        """A throttle reply: deferred to the end of the pause, never failed for it (its
        attempt is logged and counted, but does not spend the last retry)."""
        self.metrics.retried.labels(reason="throttled").inc()
        log.warning(
            "throttled, deferred until %s: %s",
            until.isoformat(),
            failure.message,
            extra={"message_id": message.message_id, "attempt": message.attempts,
                   "status": Outcome.RETRY.value},
        )  # fmt: skip
        return AttemptResult(
            email_id=message.id,
            message_id=message.message_id,
            attempt=message.attempts,
            outcome=Outcome.RETRY,
            started_at=started,
            finished_at=self.clock(),
            next_attempt_at=until,
            smtp_code=failure.code,
            response=f"throttled: {failure.message}",
            refused=failure.refusals,
            suppressed=message.suppressed,
        )

    def _failed(
        self, message: QueuedEmail, failure: DeliveryFailure, *, started: datetime
    ) -> AttemptResult:
        now = self.clock()
        permanent = isinstance(failure, PermanentFailure)
        kind = FailureKind.PERMANENT if permanent else FailureKind.TRANSIENT
        retry_at = next_attempt_at(
            attempt=message.attempts,
            kind=kind,
            max_retries=message.max_retries,
            backoff_seconds=self.options.backoff_seconds,
            now=now,
            retry_after=failure.retry_after,
        )
        outcome = Outcome.RETRY if retry_at is not None else Outcome.FAILED
        counter = self.metrics.retried if retry_at is not None else self.metrics.failed
        counter.labels(reason=failure.reason).inc()
        reason = failure.message
        if kind is FailureKind.TRANSIENT and retry_at is None:
            reason = f"retries exhausted after {message.attempts} attempts: {reason}"
        extra = {"message_id": message.message_id, "attempt": message.attempts}
        log.warning(
            "%s (%s): %s",
            "will retry" if retry_at else "failed",
            kind.value,
            reason,
            extra={**extra, "status": outcome.value},
        )
        return AttemptResult(
            email_id=message.id,
            message_id=message.message_id,
            attempt=message.attempts,
            outcome=outcome,
            started_at=started,
            finished_at=now,
            next_attempt_at=retry_at,
            smtp_code=failure.code,
            response=reason,
            refused=failure.refusals,
            suppressed=message.suppressed,
        )


class _Run:
    """One run of a worker: its tasks and the queues between them."""

    def __init__(self, worker: Worker, *, until_idle: bool) -> None:
        self.worker = worker
        self.options = worker.options
        self.until_idle = until_idle
        self.lanes = max(1, self.options.concurrency)
        self.inbox: asyncio.Queue[QueuedEmail | None] = asyncio.Queue()  # None: stop
        # Built (and signed) ahead of the senders, at most one per lane.
        self.ready: asyncio.Queue[tuple[QueuedEmail, asyncio.Future[bytes]] | None] = (
            asyncio.Queue()
        )
        self.preparing = asyncio.Semaphore(self.lanes)
        self.results: asyncio.Queue[AttemptResult | None] = asyncio.Queue()  # None: the end
        # Held by a sender from before its SMTP transaction until its result is committed.
        self.unsettled = asyncio.Semaphore(2 * self.lanes)
        self.open = 0  # messages taken by a sender whose result is not yet committed
        # SMTP_MAX_PER_*: until when each claimed message's token is good (the end of the
        # window it was taken in); a message not begun by then takes a fresh one.
        self.tokens: dict[int, tuple[datetime, Grant]] = {}  # and the grant it came from
        self._now = worker.clock()  # when the last tokens were asked for
        self.owed: list[tuple[Grant, int]] = []  # tokens taken but unused, to give back
        self.room = asyncio.Event()  # the inbox is half empty (or a stop came)
        self.recorded = asyncio.Event()  # results were committed (or a stop came)
        self.unbegun: list[QueuedEmail] = []  # claimed, never attempted: handed back
        # Every message leased to this worker that it knows of, from its claim until its
        # result is committed or it is handed back: the heartbeat renews these only.
        self.holding: set[int] = set()
        # The store may lease this worker messages it never saw: a claim that failed may
        # have committed (its answer lost), a release that failed left its messages.
        # The next claim hands them back first (release_strays).
        self.strays = False
        self.busy: set[asyncio.Task[None]] = set()  # senders inside an attempt

    async def go(self) -> None:
        senders = [asyncio.create_task(self.sender()) for _ in range(self.lanes)]
        preparer = asyncio.create_task(self.preparer())
        recorder = asyncio.create_task(self.recorder())
        heartbeat = asyncio.create_task(self.heartbeat())
        reporting = asyncio.create_task(self.reporting())
        watcher = asyncio.create_task(self.on_stop())
        try:
            await self.claimer()
        finally:
            self.worker.stop()  # the claimer is done: nothing new is begun
            await asyncio.gather(preparer, *senders, return_exceptions=True)
            watcher.cancel()
            await self.release(self.unbegun + self._left())
            self.results.put_nowait(None)
            await recorder
            heartbeat.cancel()
            reporting.cancel()
            await asyncio.gather(watcher, heartbeat, reporting, return_exceptions=True)

    def _left(self) -> list[QueuedEmail]:
        """What was claimed and never begun, from the inbox and the prepared ones."""
        left = [self.inbox.get_nowait() for _ in range(self.inbox.qsize())]
        for item in [self.ready.get_nowait() for _ in range(self.ready.qsize())]:
            if item is not None:
                _discard(item[1])
                left.append(item[0])
        return [message for message in left if message is not None]

    async def on_stop(self) -> None:
        """Once a stop is asked: wake whoever waits, and after shutdown_seconds cut short
        the attempts still running (their messages are handed back)."""
        await self.worker.stopped()
        self.room.set()
        self.recorded.set()
        self.inbox.put_nowait(None)
        self.preparing.release()
        for _ in range(self.lanes):
            self.ready.put_nowait(None)
        await asyncio.sleep(self.options.shutdown_seconds)
        for sender in list(self.busy):
            sender.cancel()

    # -- claimer ----------------------------------------------------------------------

    async def claimer(self) -> None:
        batch = self.options.batch_size
        while not self.worker.stopping:
            room = batch - self.inbox.qsize()
            # Under sending limits, no claim-ahead: tokens are taken for what is sent now.
            limited = bool(self._relay_limits()) and not self.inbox.empty()
            if limited or room < (batch + 1) // 2:  # wait for the senders
                self.room.clear()
                await self.room.wait()
                continue
            claimed = await self.claim(room)
            if claimed is None:  # the database is away
                await self._pause(self.options.store_retry_seconds)
            elif claimed:
                for message in claimed:
                    self.inbox.put_nowait(message)
            elif not self.until_idle:
                await self._idle()
            elif self.inbox.empty() and self.ready.empty() and self.open == 0:
                return  # until_idle: nothing due, nothing in hand
            else:  # until_idle: results are on their way; a retry may come due
                self.recorded.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.recorded.wait(), self.options.poll_interval)

    async def claim(self, limit: int) -> list[QueuedEmail] | None:
        """Up to `limit` due messages, within the sending limits; None if the database
        is away. Waits (or returns [] to a stop) while a limit's window is used up."""
        try:
            await self._give_back_owed()
            await self._release_strays()
            if not await self._relay_unpaused():
                return []
            grant = await self._tokens(limit)
            if grant is None:
                return []
            try:
                held = await self._held_domains()
                claimed = await self.worker.store.claim_due(
                    limit=grant.count if self._relay_limits() else limit,
                    worker=self.worker.name,
                    lease_seconds=self.options.lease_seconds,
                    now=self.worker.clock(),
                    skip_domains=held,
                )
                claimed = await self._within_domain_limits(claimed)
            except Exception:
                self.owed.append((grant, grant.count))  # nothing of the batch will be sent
                self.strays = True  # it may have committed all the same
                raise
            self.holding.update(m.id for m in claimed)
            if limits := self._relay_limits():
                self.owed.append((grant, grant.count - len(claimed)))
                try:
                    await self._give_back_owed()
                except StoreUnavailable as exc:  # owed still; the claimed mail goes out
                    log.warning("cannot give back unused sending tokens yet: %s", exc)
                good_until = min(limit.next_window(self._now) for limit in limits)
                self.tokens.update((m.id, (good_until, grant)) for m in claimed)
            return claimed
        except StoreUnavailable as exc:
            log.warning("cannot claim: %s; retrying", exc)
            return None

    async def _release_strays(self) -> None:
        """Hand back what the store leased to this worker without its knowing, before it
        claims again: left alone, such messages waited for the lease to run out."""
        if not self.strays or self.worker.stopping:  # a stop leaves them to their leases:
            return  # results it gave up writing are no longer held, yet were attempted
        self.strays = False
        try:
            released = await self.worker.store.release_strays(
                list(self.holding), worker=self.worker.name, now=self.worker.clock()
            )
        except Exception:
            self.strays = True
            raise
        if released:
            log.warning("handed back %d message(s) a failed claim or release had left", released)

    async def _give_back_owed(self) -> None:
        """Return the tokens batches took but did not use; while the database is away
        they stay owed, so an outage never eats into a window (a day's quota above all)."""
        while self.owed:
            grant, count = self.owed[0]
            if grant.windows and count > 0:
                await self.worker.store.limits.give_back(grant, count)
            self.owed.pop(0)

    async def _relay_unpaused(self) -> bool:
        """Wait while the relay is paused by a throttle reply (nothing is claimed until the
        pause ends); False to a stop, or at once when running until idle."""
        if self.options.throttle is None:
            return True
        while not self.worker.stopping:
            now = self.worker.clock()
            await self.worker.throttling.refresh(now)
            relay = self.worker.throttling.relay(now)
            if relay is None or not relay.paused(now):
                return True
            if self.until_idle:
                return False
            await self._pause((relay.until - now).total_seconds())
        return False

    def _relay_limits(self) -> tuple[RateLimit, ...]:
        """SMTP_MAX_PER_*, and the relay's recovery rate after a throttle reply."""
        return self.options.limits + self.worker.throttling.relay_limits(self.worker.clock())

    def _domain_limits(self) -> tuple[RateLimit, ...]:
        """DOMAIN_LIMITS, and the recovery rate of each domain recovering from a throttle."""
        return self.options.domain_limits + self.worker.throttling.domain_limits(
            self.worker.clock()
        )

    async def _held_domains(self) -> list[str]:
        """The recipient domains paused by a throttle reply or whose DOMAIN_LIMITS window
        is used up: claims skip their mail, so a throttled domain never holds up the
        others."""
        now = self.worker.clock()
        paused = self.worker.throttling.paused_domains(now)
        limits = self._domain_limits()
        if not limits:
            return paused
        full = set(await self.worker.store.limits.exhausted(limits, now=now))
        return paused + [limit.domain for limit in limits if limit.name in full and limit.domain]

    async def _within_domain_limits(self, claimed: list[QueuedEmail]) -> list[QueuedEmail]:
        """Tokens from each limited domain for the claimed messages that have recipients
        there (a message counts once against each of its domains); those a domain has
        no tokens for are handed back, due, for a later window."""
        limits = self._domain_limits()
        if not limits or not claimed:
            return claimed
        over: set[int] = set()
        now = self.worker.clock()
        for limit in limits:
            mine = [
                m for m in claimed if limit.domain in {domain_of(r) for r in m.email.recipients}
            ]
            if not mine:
                continue
            grant = await self.worker.store.limits.take((limit,), want=len(mine), now=now)
            over.update(m.id for m in mine[grant.count :])
        if over:
            await self.worker.store.release(list(over), worker=self.worker.name, now=now)
        return [m for m in claimed if m.id not in over]

    async def _tokens(self, want: int) -> Grant | None:
        """Tokens for a batch of `want` from every limit (all of them when there are no
        limits); None when stopping while waiting for a window."""
        if not self._relay_limits():
            return Grant(count=want)
        while not self.worker.stopping:
            now = self._now = self.worker.clock()
            limits = self._relay_limits()
            if not limits:
                return Grant(count=want)
            grant = await self.worker.store.limits.take(limits, want=want, now=now)
            if grant.count:
                return grant
            wait = (grant.retry_at - now).total_seconds() if grant.retry_at else 1.0
            await self._pause(max(0.01, wait))
        return None

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.worker.stopped(), seconds)

    async def _idle(self) -> None:
        """Nothing due: sleep until the store says work may be due, a stop, or a poll."""
        waits = {
            asyncio.ensure_future(self.worker.stopped()),
            asyncio.ensure_future(self.worker.store.wait_for_work(self.options.poll_interval)),
        }
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiting in waits:
                waiting.cancel()
            await asyncio.gather(*waits, return_exceptions=True)

    # -- preparer and senders -------------------------------------------------------------

    async def preparer(self) -> None:
        """Build (and sign) the next messages while the senders talk SMTP."""
        low_water = self.options.batch_size // 2
        while True:
            await self.preparing.acquire()  # released when a sender takes one
            message = await self.inbox.get()
            if message is None or self.worker.stopping:
                if message is not None:
                    self.unbegun.append(message)
                return
            if self.inbox.qsize() <= low_water:
                self.room.set()
            built = self.worker.prepare(message, date=self.worker.clock())
            self.ready.put_nowait((message, asyncio.ensure_future(built)))

    async def sender(self) -> None:
        while True:
            await self.unsettled.acquire()
            item = await self.ready.get()
            if item is None or self.worker.stopping:
                if item is not None:
                    _discard(item[1])
                    self.unbegun.append(item[0])
                self.unsettled.release()
                return
            self.preparing.release()
            message, prepared = item
            if self.worker.throttling.holds(message, self.worker.clock()):
                _discard(prepared)  # its relay or a recipient's domain asked for a pause
                await self.release([message])
                self.unsettled.release()
                continue
            if not await self._token_for(message):  # stopping while waiting for a window
                _discard(prepared)
                self.unbegun.append(message)
                self.unsettled.release()
                return
            self.open += 1
            result = await self._attempt(message, prepared)
            if result is None:  # cut short by a stop: handed back with the unbegun ones
                self.unbegun.append(message)
                self.open -= 1
                self.unsettled.release()
                return
            self.results.put_nowait(result)  # its slot is released once it is committed

    async def _token_for(self, message: QueuedEmail) -> bool:
        """Under sending limits, a message whose window has passed since its claim takes a
        fresh token before it is begun, so no window starts more than its count."""
        if not self._relay_limits():
            return True
        held = self.tokens.pop(message.id, None)
        until = None if held is None else held[0]
        while until is None or self.worker.clock() >= until:
            try:
                grant = await self._tokens(1)
            except StoreUnavailable as exc:
                log.warning("cannot take a sending token: %s; retrying", exc)
                await self._pause(self.options.store_retry_seconds)
                continue
            if grant is None:
                return False
            limits = self._relay_limits()
            if not limits:
                return True
            until = min(limit.next_window(self._now) for limit in limits)
        return True

    async def _attempt(
        self, message: QueuedEmail, prepared: asyncio.Future[bytes]
    ) -> AttemptResult | None:
        """The attempt's result, or None if a stop cut it short (see on_stop)."""
        sender = asyncio.current_task()
        assert sender is not None
        self.busy.add(sender)
        try:
            return await self.worker.attempt(message, prepared=prepared)
        except asyncio.CancelledError:
            if not self.worker.stopping:
                raise
            log.warning(
                "stop: attempt cut short after %.0f s",
                self.options.shutdown_seconds,
                extra={"message_id": message.message_id},
            )
            return None
        finally:
            self.busy.discard(sender)

    # -- recorder ---------------------------------------------------------------------

    async def recorder(self) -> None:
        """Write every waiting result at once, as soon as the previous write is done."""
        while True:
            group = [await self.results.get()]
            while not self.results.empty():
                group.append(self.results.get_nowait())
            results = [r for r in group if r is not None]
            if results:
                await self.record(results)
                self.holding.difference_update(r.email_id for r in results)
                self.open -= len(results)
                for _ in results:
                    self.unsettled.release()
                self.recorded.set()
            if None in group:
                return

    async def record(self, results: list[AttemptResult]) -> None:
        """Write `results`, trying again until it works; never raises.

        Until a stop, a write is tried again for as long as it fails (the senders wait
        meanwhile, so no more than 2 x SMTP_POOL_SIZE results are ever unrecorded).
        Once stopping, three more tries: results still not written leave their
        messages to their leases, attempted again later, never lost.
        """
        tries_left = _TRIES_ONCE_STOPPING
        while True:
            try:
                await self.worker.store.record_results(
                    results,
                    worker=self.worker.name,
                    now=self.worker.clock(),
                    redact=self.options.redact_after_send,
                )
                return
            except StoreUnavailable as exc:
                log.warning("cannot record %d result(s): %s; retrying", len(results), exc)
            except Exception:
                log.exception("recording %d result(s) failed; retrying", len(results))
            if self.worker.stopping:
                tries_left -= 1
                if tries_left <= 0:
                    log.error("giving up on %d result(s): their leases will run out", len(results))
                    return
            await asyncio.sleep(self.options.store_retry_seconds)

    # -- heartbeat and release -----------------------------------------------------------

    async def heartbeat(self) -> None:
        """Renew this worker's leases a few times per lease, whatever it holds."""
        interval = max(self.options.lease_seconds / 3, 0.5)
        while True:
            await asyncio.sleep(interval)
            try:
                await self.worker.store.heartbeat(
                    list(self.holding),
                    worker=self.worker.name,
                    lease_seconds=self.options.lease_seconds,
                    now=self.worker.clock(),
                )
            except StoreUnavailable as exc:
                log.warning("cannot renew leases: %s", exc)
            except Exception:  # the next beat tries again
                log.exception("renewing leases failed")

    async def reporting(self) -> None:
        """Say this worker is alive as often as the heartbeat beats, in a task of its own
        so that the write never delays a lease renewal (the dashboard lists workers)."""
        interval = max(self.options.lease_seconds / 3, 0.5)
        started = self.worker.clock()
        while True:
            await self.report_alive(started)
            await asyncio.sleep(interval)

    async def report_alive(self, started: datetime) -> None:
        seen = WorkerSeen(
            name=self.worker.name,
            started_at=started,
            last_seen=self.worker.clock(),
            delivered=self.worker.delivered,
        )
        try:
            await self.worker.store.operations.worker_seen(seen)
        except StoreUnavailable as exc:
            log.warning("cannot report this worker alive: %s", exc)
        except Exception:  # the next beat tries again
            log.exception("reporting this worker alive failed")

    async def release(self, messages: list[QueuedEmail]) -> None:
        """Hand back messages claimed but never begun, and the sending tokens they took
        (their next claim takes tokens again)."""
        if not messages:
            return
        ids = [m.id for m in messages]
        self.holding.difference_update(ids)
        try:
            released = await self.worker.store.release(
                ids, worker=self.worker.name, now=self.worker.clock()
            )
            log.info("released %d unsent message(s)", released)
        except StoreUnavailable as exc:
            self.strays = True  # the next claim tries again; no heartbeat renews them
            log.warning("cannot release %d message(s) now: %s", len(ids), exc)
        now = self.worker.clock()
        unused = filter(None, (self.tokens.pop(i, None) for i in ids))
        self.owed += [(grant, 1) for until, grant in unused if now < until]
        try:
            await self._give_back_owed()
        except StoreUnavailable as exc:  # the next claim tries again
            log.warning("cannot give back sending tokens: %s", exc)


_TRIES_ONCE_STOPPING = 3


def _discard(task: asyncio.Future[bytes]) -> None:
    """Drop a preparation no one will await, taking its error so none is logged."""
    if not task.done():
        task.cancel()
    elif not task.cancelled():
        task.exception()


def _unsuppressed(message: QueuedEmail) -> tuple[str, ...]:
    """The recipients to try: all but those on the suppression list when claimed."""
    if not message.suppressed:
        return message.email.recipients
    skipped = set(message.suppressed)
    return tuple(r for r in message.email.recipients if r not in skipped)


def _accepted(recipients: tuple[str, ...], receipt: Receipt) -> tuple[str, ...]:
    refused = {r.recipient for r in receipt.refused}
    return tuple(r for r in recipients if r not in refused)


def _receipt_text(receipt: Receipt) -> str:
    text = f"{receipt.code} {receipt.response}" if receipt.code else receipt.response
    if receipt.refused:
        refused = "; ".join(f"{r.recipient}: {r.response}" for r in receipt.refused)
        text += f" (refused: {refused})"
    return text
