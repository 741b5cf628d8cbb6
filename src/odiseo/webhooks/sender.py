"""The webhook worker: fan events out to deliveries, claim due deliveries, POST them.

It runs beside the delivery worker in `odiseo worker` and `odiseo run`, as its own
tasks with its own slots: however slow a receiver, the mail senders never wait for
it. One loop, each round:

    fan_out (marked events -> deliveries, exactly once) -> claim (due deliveries, leased)
        -> one task per delivery: check the URL's addresses, POST, record the attempt

- At most `slots` deliveries are in flight, and at most `per_endpoint` of one
  endpoint (a semaphore each; a claim skips endpoints already at their bound and
  takes no more than `per_endpoint` of any other), so a slow receiver holds only
  its own share.
- A delivery is leased from its claim until its attempt is recorded. `kill -9` loses
  nothing: an unrecorded attempt's lease runs out and it is sent again, with the same
  `webhook-id` (at least once; receivers de-duplicate on it).
- Every attempt resolves the URL again and connects to the address it checked
  (ssrf.py), follows no redirect, and must finish within `timeout` seconds, the
  reading of a 500-character excerpt of the answer included.
- The HTTP client (httpx, its TLS context) is made for the first POST, not at start:
  a worker whose installation has no webhook never loads it.
- Each POST is signed at send time (`webhook-timestamp` is now, as receivers
  require), over the body stored at fan-out, so every retry sends the same bytes.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from odiseo.domain.webhooks import (
    EXCERPT_CHARS,
    RETRY_SCHEDULE,
    Attempt,
    Claimed,
    DeliveryStatus,
    Verdict,
    judge,
)
from odiseo.errors import StoreUnavailable, WebhookRefused
from odiseo.metrics import Metrics
from odiseo.storage.contract import Webhooks
from odiseo.webhooks import signing, ssrf

if TYPE_CHECKING:
    import httpx

log = logging.getLogger(__name__)

USER_AGENT = "Odiseo-Webhooks"
FAN_OUT_BATCH = 200  # events fanned out per transaction


@dataclass(frozen=True, kw_only=True)
class WebhookOptions:
    allow_private: bool = False
    timeout: float = 10.0
    per_endpoint: int = 4
    slots: int = 32
    lease_seconds: float = 60.0
    disable_after: timedelta = timedelta(days=5)
    poll_interval: float = 1.0
    shutdown_seconds: float = 30.0
    schedule: tuple[float, ...] = RETRY_SCHEDULE
    verify: ssl.SSLContext | bool = True  # tests pass a context trusting their own CA


class WebhookWorker:
    """Fans out and delivers until stopped (see the module docstring)."""

    def __init__(
        self,
        *,
        store: Webhooks,
        options: WebhookOptions,
        name: str,
        clock: Callable[[], datetime],
        metrics: Metrics | None = None,
        resolver: ssrf.Resolver = ssrf.system_resolver,
    ) -> None:
        self.store = store
        self.options = options
        self.name = name
        self.clock = clock
        self.metrics = metrics or Metrics()
        self.resolver = resolver
        self._stop = asyncio.Event()
        self._freed = asyncio.Event()
        self._slots = asyncio.Semaphore(options.slots)
        self._in_flight: dict[str, int] = {}
        self._endpoint_slots: dict[str, asyncio.Semaphore] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._http: httpx.AsyncClient | None = None

    def stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        """Work until stopped; then let the deliveries in flight finish (within
        shutdown_seconds: those still running are cut short and left to their leases)."""
        log.info("webhook worker %s started", self.name)
        try:
            while not self._stop.is_set():
                if not await self._round():
                    await self._idle()
        finally:
            await self._finish()
            await self._close_client()
            log.info("webhook worker %s stopped", self.name)

    async def run_until_idle(self) -> None:
        """Rounds until nothing is due or in flight (tests); the schedule's later retries
        are not waited for."""
        try:
            while await self._round() or self._tasks:
                if self._tasks:
                    await asyncio.wait(self._tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            await self._close_client()

    @property
    def http(self) -> httpx.AsyncClient:
        """The client of every POST, made for the first one."""
        if self._http is None:
            import httpx

            self._http = httpx.AsyncClient(
                follow_redirects=False,
                timeout=self.options.timeout,
                verify=self.options.verify,
                trust_env=False,  # no proxy from the environment: we connect where we checked
                # Uncompressed answers: the excerpt is the first bytes as sent.
                headers={"user-agent": USER_AGENT, "accept-encoding": "identity"},
            )
        return self._http

    async def _close_client(self) -> None:
        if self._http is not None:
            http, self._http = self._http, None
            await http.aclose()

    async def _round(self) -> bool:
        """Fan out and claim once; whether there may be more to do at once."""
        try:
            fanned = await self.store.fan_out(limit=FAN_OUT_BATCH, now=self.clock())
            free = self._free_slots()
            claimed = await self._claim(free) if free else []
        except StoreUnavailable as exc:
            log.warning("webhooks: %s; trying again", exc)
            return False
        except Exception:  # the next round tries again; the mail worker is not stopped
            log.exception("webhooks: a fan-out or claim failed; trying again")
            return False
        for delivery in claimed:
            self._start(delivery)
        return fanned == FAN_OUT_BATCH or (0 < len(claimed) < free)

    def _free_slots(self) -> int:
        return self.options.slots - len(self._tasks)

    async def _claim(self, free: int) -> list[Claimed]:
        per_endpoint = self.options.per_endpoint
        busy = [e for e, n in self._in_flight.items() if n >= per_endpoint]
        return await self.store.claim_deliveries(
            limit=free,
            per_endpoint=per_endpoint,
            busy=busy,
            worker=self.name,
            lease_seconds=self.options.lease_seconds,
            now=self.clock(),
        )

    async def _idle(self) -> None:
        self._freed.clear()
        waits = [asyncio.ensure_future(e.wait()) for e in (self._stop, self._freed)]
        try:
            await asyncio.wait(
                waits, timeout=self.options.poll_interval, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            for waiting in waits:
                waiting.cancel()

    def _start(self, claimed: Claimed) -> None:
        self._in_flight[claimed.endpoint_id] = self._in_flight.get(claimed.endpoint_id, 0) + 1
        task = asyncio.create_task(self._deliver(claimed))
        self._tasks.add(task)
        task.add_done_callback(lambda done: self._done(done, claimed.endpoint_id))

    def _done(self, task: asyncio.Task[None], endpoint_id: str) -> None:
        self._tasks.discard(task)
        left = self._in_flight[endpoint_id] - 1
        if left:
            self._in_flight[endpoint_id] = left
        else:
            del self._in_flight[endpoint_id]
            self._endpoint_slots.pop(endpoint_id, None)
        self._freed.set()
        if not task.cancelled() and task.exception() is not None:
            log.error("webhook delivery failed unexpectedly", exc_info=task.exception())

    async def _finish(self) -> None:
        if not self._tasks:
            return
        _, running = await asyncio.wait(self._tasks, timeout=self.options.shutdown_seconds)
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)

    # -- one delivery -----------------------------------------------------------------

    async def _deliver(self, claimed: Claimed) -> None:
        bound = self._endpoint_slots.setdefault(
            claimed.endpoint_id, asyncio.Semaphore(self.options.per_endpoint)
        )
        async with bound:
            attempt = await self.attempt(claimed)
        verdict = judge(
            claimed.attempt, attempt.status_code, now=self.clock(), schedule=self.options.schedule
        )
        await self._record(claimed, attempt, verdict)

    async def attempt(self, claimed: Claimed) -> Attempt:
        """One POST of the delivery, within the timeout; what came back or went wrong."""
        import httpx

        started, clock = self.clock(), time.monotonic()
        status, excerpt, error = None, None, None
        try:
            async with asyncio.timeout(self.options.timeout):
                target = await ssrf.check(
                    claimed.url, allow_private=self.options.allow_private, resolver=self.resolver
                )
                status, excerpt = await self._post(target, claimed)
        except WebhookRefused as exc:
            error = exc.message
        except TimeoutError:
            error = f"no answer within {self.options.timeout:g} s"
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"[:EXCERPT_CHARS]
        except Exception as exc:  # recorded as a failed attempt, never left to the lease
            log.exception("webhook POST failed unexpectedly", extra={"attempt": claimed.attempt})
            error = f"{type(exc).__name__}: {exc}"[:EXCERPT_CHARS]
        return Attempt(
            at=started,
            duration_ms=round((time.monotonic() - clock) * 1000),
            status_code=status,
            response=excerpt,
            error=error,
        )

    async def _post(self, target: ssrf.Target, claimed: Claimed) -> tuple[int, str]:
        timestamp = int(self.clock().timestamp())
        headers = signing.headers(
            claimed.secrets,
            webhook_id=claimed.webhook_id,
            timestamp=timestamp,
            body=claimed.payload,
        )
        headers["host"] = target.host_header
        request = self.http.build_request(
            "POST",
            target.pinned,
            content=claimed.payload,
            headers=headers,
            extensions=target.extensions,
        )
        response = await self.http.send(request, stream=True)
        try:
            return response.status_code, await _excerpt(response)
        finally:
            await response.aclose()

    async def _record(self, claimed: Claimed, attempt: Attempt, verdict: Verdict) -> None:
        """Write the attempt, trying again while the database is away (until a stop:
        then the lease runs out and the delivery is sent again)."""
        extra = {"webhook_id": claimed.webhook_id, "attempt": claimed.attempt}
        while True:
            try:
                disabled = await self.store.record_delivery(
                    claimed,
                    attempt=attempt,
                    verdict=verdict,
                    worker=self.name,
                    disable_after=self.options.disable_after,
                    now=self.clock(),
                )
                break
            except StoreUnavailable as exc:
                log.warning("cannot record a webhook attempt: %s", exc, extra=extra)
                if self._stop.is_set():
                    return
                await asyncio.sleep(self.options.poll_interval)
        self.metrics.webhook_deliveries.labels(outcome=_outcome(verdict)).inc()
        what = attempt.status_code if attempt.status_code is not None else attempt.error
        log.info(
            "webhook %s to %s: %s", verdict.status.value, claimed.endpoint_id, what, extra=extra
        )
        if disabled is not None:
            log.warning("webhook endpoint %s disabled: %s", claimed.endpoint_id, disabled)


def _outcome(verdict: Verdict) -> str:
    if verdict.status is DeliveryStatus.PENDING:
        return "retrying"
    return verdict.status.value


async def _excerpt(response: httpx.Response) -> str:
    """The first EXCERPT_CHARS characters of the answer, reading no more than needed."""
    taken = bytearray()
    async for chunk in response.aiter_raw():
        taken += chunk
        if len(taken) >= 4 * EXCERPT_CHARS:
            break
    return taken.decode("utf-8", errors="replace")[:EXCERPT_CHARS]
