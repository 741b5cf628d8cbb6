"""A scriptable provider and a store wrapper that can slow down or fail chosen verbs."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

import asyncpg

from odiseo.errors import TransientFailure
from odiseo.providers.base import Receipt


def deadlock() -> asyncpg.exceptions.DeadlockDetectedError:
    """The error PostgreSQL raises when two statements wait on each other's row locks
    (store/test_postgres_lock_order.py shows RECORD and EXTEND doing exactly that)."""
    return asyncpg.exceptions.DeadlockDetectedError("deadlock detected")


class FakeProvider:
    """Delivers instantly unless told otherwise; remembers what it is sending right now."""

    name = "fake"

    def __init__(
        self,
        *,
        delays: dict[str, float] | None = None,
        fail_first: set[str] | None = None,
    ) -> None:
        self.delays = delays or {}  # recipient -> seconds the delivery takes
        self.fail_first = set(fail_first or ())  # recipients whose first attempt is deferred
        self.sending: set[str] = set()  # recipients being delivered right now
        self.sent: list[str] = []  # recipients delivered, in order

    async def deliver(
        self, data: bytes, *, sender: str, recipients: Sequence[str], message_id: str
    ) -> Receipt:
        (rcpt,) = recipients
        self.sending.add(rcpt)
        try:
            await asyncio.sleep(self.delays.get(rcpt, 0.01))
        finally:
            self.sending.discard(rcpt)
        if rcpt in self.fail_first:
            self.fail_first.discard(rcpt)
            raise TransientFailure("451 4.3.0 try again", code=451, reason="smtp_4xx")
        self.sent.append(rcpt)
        return Receipt(code=250, response="2.0.0 ok")

    async def check(self) -> None:
        return None

    async def close(self) -> None:
        return None


class StoreWrapper:
    """Delegates to a real store; `record_hook` / `heartbeat_hook` / `claim_hook` run
    before the real verb, `claimed_hook` after the claim committed (it may raise, as a
    lost answer would)."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.record_hook: Callable[[Sequence[Any]], Any] | None = None
        self.heartbeat_hook: Callable[[], Any] | None = None
        self.claim_hook: Callable[[], Any] | None = None
        self.claimed_hook: Callable[[list[Any]], Any] | None = None  # after the commit
        self.records_in_flight = 0
        self.max_records_in_flight = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def record_results(self, results: Sequence[Any], **kwargs: Any) -> int:
        self.records_in_flight += 1
        self.max_records_in_flight = max(self.max_records_in_flight, self.records_in_flight)
        try:
            if self.record_hook is not None:
                await self.record_hook(results)
            return int(await self._inner.record_results(results, **kwargs))
        finally:
            self.records_in_flight -= 1

    async def claim_due(self, **kwargs: Any) -> list[Any]:
        if self.claim_hook is not None:
            await self.claim_hook()
        claimed = list(await self._inner.claim_due(**kwargs))
        if self.claimed_hook is not None:
            await self.claimed_hook(claimed)
        return claimed

    async def heartbeat(self, ids: Sequence[int], **kwargs: Any) -> int:
        if self.heartbeat_hook is not None:
            await self.heartbeat_hook()
        return int(await self._inner.heartbeat(ids, **kwargs))
