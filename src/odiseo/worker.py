"""The delivery worker: claim -> build -> deliver -> record, with leases and a clean stop."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import logging
import os
import socket
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from odiseo.domain.models import AttemptResult, FailureKind, Outcome, QueuedEmail
from odiseo.domain.retry import next_attempt_at
from odiseo.errors import DeliveryFailure, PermanentFailure, StoreUnavailable
from odiseo.metrics import Metrics
from odiseo.mime import build_message
from odiseo.providers.base import Provider, Receipt
from odiseo.storage.store import EmailStore

log = logging.getLogger(__name__)

# How often finished attempts are written back during a long batch, at most.
FLUSH_SECONDS = 1.0
STORE_RETRY_SECONDS = 2.0
RECORD_TRIES = 5  # for errors other than the database being away


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


class Worker:
    """Delivers due messages until told to stop."""

    def __init__(
        self,
        *,
        store: EmailStore,
        provider: Provider,
        options: WorkerOptions,
        name: str | None = None,
        clock: Callable[[], datetime] = utcnow,
        metrics: Metrics | None = None,
        sign: Callable[[bytes], Awaitable[bytes]] | None = None,
    ) -> None:
        self.store = store
        self.provider = provider
        self.options = options
        self.name = name or worker_name()
        self.clock = clock
        self.metrics = metrics or Metrics()
        self.sign = sign
        self._stop = asyncio.Event()
        self.delivered = 0
        self._held: set[int] = set()  # claimed, result not yet recorded: leases kept alive
        self._recording: asyncio.Future[None] | None = None

    def stop(self) -> None:
        """Ask the worker to finish the message in hand, hand back the rest and return."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    async def run(self) -> None:
        """Deliver until stopped, overlapping the database work with the SMTP work.

        While one batch is delivered the next is already claimed (when the last
        one was full, so more is likely due), and finished attempts are written
        back in the background; every held message keeps its lease alive until
        its result is recorded.
        """
        log.info("worker %s started (provider %s)", self.name, self.provider.name)
        ahead: asyncio.Future[list[QueuedEmail] | None] | None = None
        try:
            async with self._leases_kept():
                try:
                    while not self.stopping:
                        batch = await ahead if ahead is not None else await self._claim()
                        ahead = None
                        if batch is None:  # the database is away
                            await self._pause(STORE_RETRY_SECONDS)
                        elif not batch:
                            await self._idle()
                        else:
                            if len(batch) >= self.options.batch_size:
                                ahead = asyncio.ensure_future(self._claim())
                            await self.process(batch)
                finally:
                    if ahead is not None:  # claimed ahead, never attempted: hand it back
                        unsent = await ahead
                        if unsent:
                            await self._release([m.id for m in unsent])
                    await self._drain_records()
        finally:
            await self.provider.close()
            log.info("worker %s stopped after %d deliveries", self.name, self.delivered)

    async def run_until_idle(self) -> int:
        """Deliver until nothing is due; for tests and one-shot use. Returns deliveries made."""
        before = self.delivered
        async with self._leases_kept():
            while True:
                await self._drain_records()  # a retry it writes may already be due
                batch = await self._claim(raising=True)
                if not batch:
                    break
                await self.process(batch)
        return self.delivered - before

    @contextlib.asynccontextmanager
    async def _leases_kept(self) -> AsyncIterator[None]:
        """Run the lease heartbeat for as long as the block runs."""
        heartbeat = asyncio.ensure_future(self._keep_leases())
        try:
            yield
        finally:
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat

    async def _claim(self, *, raising: bool = False) -> list[QueuedEmail] | None:
        """Claim a batch and hold its leases; None while the database is unavailable."""
        try:
            batch = await self.store.claim_due(
                limit=self.options.batch_size,
                worker=self.name,
                lease_seconds=self.options.lease_seconds,
                now=self.clock(),
            )
        except StoreUnavailable as exc:
            if raising:
                raise
            log.warning("cannot claim: %s; retrying", exc)
            return None
        self._held.update(m.id for m in batch)
        return batch

    async def _idle(self) -> None:
        waiting = asyncio.ensure_future(self.store.wait_for_work(self.options.poll_interval))
        stopping = asyncio.ensure_future(self._stop.wait())
        try:
            await asyncio.wait({waiting, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (waiting, stopping):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), seconds)

    async def process(self, batch: list[QueuedEmail]) -> None:
        """Deliver a claimed batch over `concurrency` lanes; results are recorded as they come.

        Each lane takes the next message as soon as its previous one is done, so a
        slow message holds up one lane, not the batch. On a stop, lanes finish the
        message in hand (within shutdown_seconds) and the untried rest is handed back.
        """
        queue = collections.deque(batch)
        untried: dict[int, QueuedEmail] = {m.id: m for m in batch}
        sending: set[int] = set()  # taken by a lane, no result yet
        finished: list[AttemptResult] = []
        last_flush = time.monotonic()
        ahead = _SignedAhead(self, queue) if self.sign is not None else None

        async def lane() -> None:
            nonlocal finished, last_flush
            while queue and not self.stopping:
                message = queue.popleft()
                sending.add(message.id)
                prepared = ahead.take(message) if ahead is not None else None
                result = await self._attempt_within_shutdown(message, prepared)
                sending.discard(message.id)
                if result is None:  # cut short by a stop: handed back below
                    return
                finished.append(result)
                del untried[message.id]
                if time.monotonic() - last_flush >= FLUSH_SECONDS:
                    due, finished, last_flush = finished, [], time.monotonic()
                    await self._record_in_background(due)

        lanes = [lane() for _ in range(max(1, self.options.concurrency))]
        try:
            # Every lane runs to its end even if one fails: a sibling's message in
            # the middle of its SMTP transaction must not be handed back meanwhile.
            outcomes = await asyncio.gather(*lanes, return_exceptions=True)
        finally:
            if ahead is not None:
                ahead.discard()
            await self._record_in_background(finished)
            if sending:  # interrupted mid-transaction: maybe sent, so left to its lease
                log.warning("%d message(s) in an unknown state, left to their lease", len(sending))
                self._held.difference_update(sending)
            unsent = [i for i in untried if i not in sending]
            if unsent:
                await self._release(unsent)
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome

    async def _attempt_within_shutdown(
        self, message: QueuedEmail, prepared: asyncio.Future[bytes] | None = None
    ) -> AttemptResult | None:
        """Attempt a message; once a stop is asked, give it at most shutdown_seconds more."""
        attempt = asyncio.ensure_future(self.attempt(message, prepared=prepared))
        stopping = asyncio.ensure_future(self._stop.wait())
        try:
            await asyncio.wait({attempt, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if not attempt.done():
                await asyncio.wait({attempt}, timeout=self.options.shutdown_seconds)
            if attempt.done():
                return attempt.result()
            log.warning(
                "stop: abandoning an attempt after %.0f s",
                self.options.shutdown_seconds,
                extra={"message_id": message.message_id},
            )
            attempt.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await attempt
            return None
        finally:
            stopping.cancel()

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
        try:
            data = await (prepared if prepared is not None else self.prepare(message, date=started))
            with self.metrics.provider_call.time():
                receipt = await self.provider.deliver(
                    data,
                    sender=message.email.from_email,
                    recipients=message.email.recipients,
                    message_id=message.message_id,
                )
        except DeliveryFailure as failure:
            return self._failed(message, failure, started=started)
        except Exception as exc:  # a message we cannot even build: retrying will not help
            log.exception("cannot build message", extra=extra)
            unbuildable = PermanentFailure(f"cannot build message: {type(exc).__name__}: {exc}")
            return self._failed(message, unbuildable, started=started)
        self.delivered += 1
        finished = self.clock()
        self.metrics.sent.inc()
        self.metrics.delivery_latency.observe((finished - message.created_at).total_seconds())
        log.info("sent: %s", _receipt_text(receipt), extra={**extra, "status": "sent"})
        return AttemptResult(
            email_id=message.id,
            attempt=message.attempts,
            outcome=Outcome.SENT,
            started_at=started,
            finished_at=finished,
            smtp_code=receipt.code,
            response=_receipt_text(receipt),
        )

    async def prepare(self, message: QueuedEmail, *, date: datetime) -> bytes:
        """The bytes to send: the message built, and signed when DKIM is on."""
        data = build_message(message.email, date=date)
        if self.sign is not None:
            data = await self.sign(data)
        return data

    def _failed(
        self, message: QueuedEmail, failure: DeliveryFailure, *, started: datetime
    ) -> AttemptResult:
        now = self.clock()
        kind = (
            FailureKind.PERMANENT
            if isinstance(failure, PermanentFailure)
            else FailureKind.TRANSIENT
        )
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
        log.warning(
            "%s (%s): %s",
            "will retry" if retry_at else "failed",
            kind.value,
            reason,
            extra={
                "message_id": message.message_id,
                "attempt": message.attempts,
                "status": outcome.value,
            },
        )
        return AttemptResult(
            email_id=message.id,
            attempt=message.attempts,
            outcome=outcome,
            started_at=started,
            finished_at=now,
            next_attempt_at=retry_at,
            smtp_code=failure.code,
            response=reason,
        )

    async def _record_in_background(self, results: list[AttemptResult]) -> None:
        """Write results back while delivery goes on; at most one write is in flight."""
        if not results:
            return
        await self._drain_records()
        self._recording = asyncio.ensure_future(self._record(results))

    async def _drain_records(self) -> None:
        """Wait until no write is in flight (its messages stay leased until it lands)."""
        while (recording := self._recording) is not None:
            try:
                await recording
            finally:
                if self._recording is recording:
                    self._recording = None

    async def _record(self, results: list[AttemptResult]) -> None:
        """Write results back; never raises.

        While the database is away the results are kept and tried again (three
        more times once stopping). Any other error is tried again a few times;
        if it persists the messages are let go of, so their leases run out and
        they are attempted again rather than held forever.
        """
        unavailable = failed = 0
        while True:
            try:
                await self.store.record_results(results, worker=self.name, now=self.clock())
                break
            except StoreUnavailable as exc:
                unavailable += 1
                if self.stopping and unavailable >= 3:
                    log.error("giving up on recording %d result(s): %s", len(results), exc)
                    break
                log.warning("cannot record %d result(s): %s; retrying", len(results), exc)
            except Exception:
                failed += 1
                log.exception("recording %d result(s) failed (try %d)", len(results), failed)
                if failed >= RECORD_TRIES or self.stopping:
                    log.error("letting %d message(s) go: their leases will run out", len(results))
                    break
            await asyncio.sleep(STORE_RETRY_SECONDS)
        self._held.difference_update(r.email_id for r in results)

    async def _release(self, ids: list[int]) -> None:
        try:
            released = await self.store.release(ids, worker=self.name, now=self.clock())
            log.info("released %d unsent message(s)", released)
        except StoreUnavailable as exc:
            log.warning("cannot release %d message(s), their lease will expire: %s", len(ids), exc)
        self._held.difference_update(ids)

    async def _keep_leases(self) -> None:
        """Extend the leases of held messages so a slow but healthy worker is not overtaken.

        Held means claimed and not yet recorded or released, attempted or not: a
        sent-but-unrecorded message whose lease ran out would be sent again.
        """
        interval = max(self.options.lease_seconds / 3, 0.5)
        while True:
            await asyncio.sleep(interval)
            if not self._held:
                continue
            try:
                await self.store.extend_leases(
                    list(self._held),
                    worker=self.name,
                    lease_seconds=self.options.lease_seconds,
                    now=self.clock(),
                )
            except StoreUnavailable as exc:
                log.warning("cannot extend leases: %s", exc)
            except Exception:  # e.g. a deadlock: the next beat tries again
                log.exception("extending leases failed")


def _receipt_text(receipt: Receipt) -> str:
    text = f"{receipt.code} {receipt.response}" if receipt.code else receipt.response
    if receipt.refused:
        refused = "; ".join(f"{addr}: {reply}" for addr, reply in receipt.refused.items())
        text += f" (refused: {refused})"
    return text


class _SignedAhead:
    """The next messages of a batch, built and signed before a lane takes them.

    The signature is made in a thread: preparing a few messages ahead while the
    lanes talk SMTP keeps a lane from waiting for it. At most `concurrency` are
    prepared ahead, so large messages cannot pile up in memory.
    """

    def __init__(self, worker: Worker, queue: collections.deque[QueuedEmail]) -> None:
        self._worker = worker
        self._queue = queue
        self._depth = max(1, worker.options.concurrency)
        self._tasks: dict[int, asyncio.Future[bytes]] = {}
        self._fill()

    def take(self, message: QueuedEmail) -> asyncio.Future[bytes]:
        """The preparation of `message`, just taken off the queue; the next ones start."""
        task = self._tasks.pop(message.id, None)
        if task is None:
            task = self._start(message)
        self._fill()
        return task

    def discard(self) -> None:
        """Drop the preparations of messages no lane took (handed back on a stop)."""
        for task in self._tasks.values():
            _discard(task)
        self._tasks.clear()

    def _fill(self) -> None:
        for message in itertools.islice(self._queue, self._depth):
            if message.id not in self._tasks:
                self._tasks[message.id] = self._start(message)

    def _start(self, message: QueuedEmail) -> asyncio.Future[bytes]:
        return asyncio.ensure_future(self._worker.prepare(message, date=self._worker.clock()))


def _discard(task: asyncio.Future[bytes]) -> None:
    """Cancel a preparation no one will await, or take its error so none is logged."""
    if not task.done():
        task.cancel()
    elif not task.cancelled():
        task.exception()
