"""The webhook worker against a real receiver (tests/support/receiver.py), on both stores."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from odiseo.domain.events import EventType
from odiseo.metrics import Metrics
from odiseo.storage.contract import Store
from odiseo.webhooks import ssrf
from odiseo.webhooks.sender import WebhookOptions, WebhookWorker
from odiseo.webhooks.service import WebhookService

FAST = (0.0, 0.0, 0.0, 0.0, 0.0)  # the retry schedule of tests that do not wait


def utcnow() -> datetime:
    return datetime.now(UTC)


def fixed(addresses: dict[str, str]) -> ssrf.Resolver:
    """A resolver answering from `addresses` (name -> address), as DNS would."""

    async def resolve(host: str, port: int) -> list[str]:
        if host not in addresses:
            raise AssertionError(f"unexpected lookup of {host}")
        return [addresses[host]]

    return resolve


def service(store: Store, *, allow_private: bool = True, **kwargs: Any) -> WebhookService:
    return WebhookService(store=store.webhooks, allow_private=allow_private, **kwargs)


def hook_worker(
    store: Store,
    *,
    clock: Callable[[], datetime] = utcnow,
    resolver: ssrf.Resolver = ssrf.system_resolver,
    **options: Any,
) -> WebhookWorker:
    settings: dict[str, Any] = {
        "allow_private": True,
        "timeout": 5.0,
        "poll_interval": 0.05,
        "schedule": FAST,
        "shutdown_seconds": 5.0,
        **options,
    }
    return WebhookWorker(
        store=store.webhooks,
        options=WebhookOptions(**settings),
        name="test-worker",
        clock=clock,
        metrics=Metrics(),
        resolver=resolver,
    )


@contextlib.asynccontextmanager
async def running(worker: WebhookWorker) -> AsyncIterator[WebhookWorker]:
    task = asyncio.create_task(worker.run())
    try:
        yield worker
    finally:
        worker.stop()
        await task


async def until(condition: Callable[[], Any], *, timeout: float = 30, what: str = "") -> Any:
    """Poll `condition` until it is truthy; fail after `timeout` seconds (a liveness bound,
    not a measurement)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


async def publish(store: Store, count: int, *, now: datetime | None = None) -> list[int]:
    """`count` events (relay.throttled, a system event), marked for the fan-out; their ids."""
    when = now or utcnow()
    return [
        await store.outcomes.publish(EventType.RELAY_THROTTLED, data={"n": n}, now=when)
        for n in range(count)
    ]


def later(delta: timedelta) -> Callable[[], datetime]:
    return lambda: utcnow() + delta
