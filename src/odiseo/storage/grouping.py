"""Group commit: single enqueues arriving together in one process share one transaction.

`GroupCommit.enqueue_one` is what `POST /emails` (and SMTP submission) store through.
When no write is in progress the message is written at once, alone: a lone request
waits for nothing. Messages that arrive while a write is in progress wait for it to
finish, then go together in the next one: one `Store.enqueue` of all of them (one
transaction, a COPY or one INSERT), and each caller is answered when that commit
returns: PostgreSQL's `commit_delay` idea, or Kafka's `linger.ms`, without a timer.
The wait is bounded by one write in progress, never by a fixed delay.

What each caller is told is what that commit stored for it:

- its own `Enqueued` (created; or, for a client_message_id already stored, or stored by
  an earlier request of the same group, the original message id: `Store.enqueue`
  answers a repeated key within one call so);
- StoreUnavailable for every caller of a group whose write failed because the database
  is gone: nothing of it was committed, or it cannot be known, so no caller hears 202;
- any other failure of a group (one row refused by the database, say) does not fail its
  neighbours: each message of the group is then written on its own, and each caller
  gets its own outcome.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime

from odiseo.domain.models import NewEmail
from odiseo.errors import StoreUnavailable
from odiseo.storage.contract import Enqueued

log = logging.getLogger(__name__)

# At most this many messages per transaction: bounds a statement's size and how much one
# failed group makes its callers retry.
MAX_GROUP = 256


@dataclass(eq=False)
class _Waiting:
    item: NewEmail
    now: datetime
    answer: asyncio.Future[Enqueued] = field(repr=False)


class GroupCommit:
    """Writes the single enqueues of one process in groups, one transaction each.

    Args:
        enqueue: the store's `enqueue` (many messages, one transaction).
        writers: how many groups may be written at once (each on its own connection).
        max_group: the most messages one transaction takes.
    """

    def __init__(
        self,
        enqueue: Callable[..., Awaitable[list[Enqueued]]],
        *,
        writers: int = 1,
        max_group: int = MAX_GROUP,
    ) -> None:
        if writers < 1 or max_group < 1:
            raise ValueError("writers and max_group must be at least 1")
        self._enqueue = enqueue
        self.writers = writers
        self.max_group = max_group
        self._pending: list[_Waiting] = []
        self._running: set[asyncio.Task[None]] = set()
        self._active = 0  # drains running; counted here, not by done callbacks, which lag

    async def enqueue_one(self, item: NewEmail, *, now: datetime) -> Enqueued:
        """Store one message durably; returns once the transaction holding it committed.

        A group is written with the latest `now` of its messages (their created_at),
        which is at most one write's time after this caller's.
        """
        if self._active < self.writers and not self._pending:
            # Idle: written at once, alone, by this caller (no task, no hand-over); what
            # arrives meanwhile is written together once this commit returns.
            self._active += 1
            try:
                (result,) = await self._enqueue([item], now=now)
            finally:
                self._active -= 1
                self._start_draining()
            return result
        waiting = _Waiting(item, now, asyncio.get_running_loop().create_future())
        self._pending.append(waiting)
        self._start_draining()
        return await waiting.answer

    def _start_draining(self) -> None:
        if self._pending and self._active < self.writers:
            self._active += 1
            task = asyncio.create_task(self._drain(), name="group-commit")
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _drain(self) -> None:
        """Write groups until nothing is pending (what arrives meanwhile joins the next)."""
        try:
            await self._write_pending()
        finally:
            self._active -= 1  # with no await since the queue was last seen empty

    async def _write_pending(self) -> None:
        while self._pending:
            taken = self._pending[: self.max_group]
            del self._pending[: self.max_group]
            group = [w for w in taken if not w.answer.done()]  # not a cancelled caller's
            if not group:
                continue
            try:
                await self._write(group)
            except BaseException:  # cancelled (shutting down): nobody waits forever
                for waiting in group:
                    _fail(waiting, StoreUnavailable("the write was interrupted"))
                raise

    async def _write(self, group: list[_Waiting]) -> None:
        now = max(w.now for w in group)
        try:
            results = await self._enqueue([w.item for w in group], now=now)
        except StoreUnavailable as exc:  # nothing committed, or nobody can tell: no 202
            for waiting in group:
                _fail(waiting, exc)
            return
        except Exception as exc:
            if len(group) == 1:
                _fail(group[0], exc)
                return
            log.warning(
                "a group of %d messages failed (%s): writing each on its own",
                len(group),
                type(exc).__name__,
            )
            await self._one_by_one(group)
            return
        for waiting, result in zip(group, results, strict=True):
            if not waiting.answer.done():
                waiting.answer.set_result(result)

    async def _one_by_one(self, group: list[_Waiting]) -> None:
        """Each message in its own transaction: one refused row fails only its caller."""
        for waiting in group:
            try:
                (result,) = await self._enqueue([waiting.item], now=waiting.now)
            except Exception as exc:
                _fail(waiting, exc)
            else:
                if not waiting.answer.done():
                    waiting.answer.set_result(result)

    async def close(self) -> None:
        """Wait for the groups being written (their callers are answered)."""
        if self._running:
            await asyncio.gather(*self._running, return_exceptions=True)


def _fail(waiting: _Waiting, exc: BaseException) -> None:
    if not waiting.answer.done():
        waiting.answer.set_exception(exc)
