"""Group commit (storage/grouping.py) on both stores: single enqueues that arrive together
share one transaction, each caller hears what that transaction stored for it."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import text

from odiseo.domain.models import NewEmail
from odiseo.storage.contract import Enqueued, Store
from odiseo.storage.grouping import GroupCommit
from tests.conftest import sqlalchemy_engine
from tests.support.factories import new_email

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


class Recorded:
    """The store's own enqueue, each call's size noted: the groups that were written."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.sizes: list[int] = []

    async def __call__(self, items: Sequence[NewEmail], *, now: datetime) -> list[Enqueued]:
        self.sizes.append(len(items))
        return await self.store.enqueue(items, now=now)


def keyed(key: str, *, subject: str = "Hello") -> NewEmail:
    return new_email(subject=subject, client_message_id=key, payload_hash=f"hash-of-{subject}")


async def test_a_lone_message_is_written_at_once_alone(store: Store) -> None:
    calls = Recorded(store)
    writer = GroupCommit(calls)
    item = new_email()
    result = await writer.enqueue_one(item, now=NOW)
    assert result == Enqueued(message_id=item.email.message_id, created=True)
    assert calls.sizes == [1]
    assert await store.get(item.email.message_id) is not None


async def test_messages_arriving_together_share_a_transaction(store: Store) -> None:
    calls = Recorded(store)
    writer = GroupCommit(calls)
    items = [new_email(to=f"user{i}@example.com") for i in range(30)]
    results = await asyncio.gather(*(writer.enqueue_one(i, now=NOW) for i in items))
    assert [r.message_id for r in results] == [i.email.message_id for i in items]
    assert all(r.created for r in results)
    assert calls.sizes == [1, 29]  # the first at once; the others arrived during its write
    for item in items:
        stored = await store.get(item.email.message_id)
        assert stored is not None and stored.email.to == item.email.to


async def test_what_arrives_during_a_write_goes_in_the_next_one(store: Store) -> None:
    calls = Recorded(store)
    writer = GroupCommit(calls)
    first = asyncio.ensure_future(writer.enqueue_one(new_email(), now=NOW))
    await asyncio.sleep(0)  # the first write has started
    later = [new_email(to=f"later{i}@example.com") for i in range(5)]
    results = await asyncio.gather(*(writer.enqueue_one(i, now=NOW) for i in later))
    assert (await first).created and all(r.created for r in results)
    assert calls.sizes == [1, 5]


async def test_a_key_repeated_within_a_group_is_stored_once(store: Store) -> None:
    calls = Recorded(store)
    writer = GroupCommit(calls)
    items = [keyed("k-1") for _ in range(6)] + [new_email() for _ in range(4)]
    results = await asyncio.gather(*(writer.enqueue_one(i, now=NOW) for i in items))
    same_key = results[:6]
    assert [r.created for r in same_key].count(True) == 1
    assert len({r.message_id for r in same_key}) == 1
    assert all(r.same_payload for r in same_key)
    assert all(r.created for r in results[6:])
    assert calls.sizes == [1, len(items) - 1]
    assert (await store.counts())["pending"] == 5


async def test_a_key_already_stored_answers_with_the_original(store: Store) -> None:
    (original,) = await store.enqueue([keyed("k-2")], now=NOW)
    writer = GroupCommit(store.enqueue)
    items = [keyed("k-2"), keyed("k-2", subject="Other"), new_email(), new_email()]
    results = await asyncio.gather(*(writer.enqueue_one(i, now=NOW) for i in items))
    assert results[0] == Enqueued(message_id=original.message_id, created=False)
    assert results[1] == Enqueued(message_id=original.message_id, created=False, same_payload=False)
    assert results[2].created and results[3].created


POISON = "refused by the database"


async def refuse_subject(store: Store, database_url: tuple[str, str]) -> None:
    """Make the database itself refuse any row with the subject POISON (what no
    validation catches: a constraint of its own)."""
    url, schema = database_url
    engine = sqlalchemy_engine(url, schema)
    try:
        async with engine.begin() as conn:
            if url.startswith("sqlite"):
                await conn.execute(
                    text(
                        "CREATE TRIGGER poison BEFORE INSERT ON emails "
                        f"WHEN NEW.subject = '{POISON}' "
                        "BEGIN SELECT RAISE(ABORT, 'poison'); END"
                    )
                )
            else:
                await conn.execute(
                    text(
                        f'ALTER TABLE "{schema}".emails ADD CONSTRAINT poison '
                        f"CHECK (subject <> '{POISON}')"
                    )
                )
    finally:
        await engine.dispose()


async def test_one_refused_row_does_not_fail_its_neighbours(
    store: Store, database_url: tuple[str, str]
) -> None:
    await refuse_subject(store, database_url)
    calls = Recorded(store)
    writer = GroupCommit(calls)
    items = [new_email(to=f"n{i}@example.com") for i in range(4)]
    items.insert(2, new_email(subject=POISON))
    items.append(keyed("k-3"))
    outcomes: list[Any] = await asyncio.gather(
        *(writer.enqueue_one(i, now=NOW) for i in items), return_exceptions=True
    )
    assert isinstance(outcomes[2], Exception), outcomes[2]
    for item, outcome in zip(items, outcomes, strict=True):
        if item.email.subject == POISON:
            continue
        assert isinstance(outcome, Enqueued) and outcome.created, outcome
        assert outcome.message_id == item.email.message_id
        assert await store.get(item.email.message_id) is not None
    assert await store.get(items[2].email.message_id) is None
    # The first alone (nothing was being written), the others as one group, which
    # failed, then each of them on its own.
    assert calls.sizes == [1, len(items) - 1] + [1] * (len(items) - 1)
    assert (await store.counts())["pending"] == len(items) - 1


async def test_a_cancelled_caller_is_not_written(store: Store) -> None:
    calls = Recorded(store)
    writer = GroupCommit(calls)
    first = asyncio.ensure_future(writer.enqueue_one(new_email(), now=NOW))
    await asyncio.sleep(0)
    gone_item, kept_item = new_email(), new_email()
    gone = asyncio.ensure_future(writer.enqueue_one(gone_item, now=NOW))
    kept = asyncio.ensure_future(writer.enqueue_one(kept_item, now=NOW))
    await asyncio.sleep(0)
    gone.cancel()
    assert (await kept).created and (await first).created
    with pytest.raises(asyncio.CancelledError):
        await gone
    assert calls.sizes == [1, 1]
    assert await store.get(gone_item.email.message_id) is None


async def test_a_group_is_bounded(store: Store) -> None:
    calls = Recorded(store)
    writer = GroupCommit(calls, max_group=4)
    items = [new_email(to=f"b{i}@example.com") for i in range(10)]
    results = await asyncio.gather(*(writer.enqueue_one(i, now=NOW) for i in items))
    assert all(r.created for r in results)
    assert calls.sizes == [1, 4, 4, 1]
