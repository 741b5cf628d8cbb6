"""One Store suite, run on SQLite and on PostgreSQL (the `store` fixture)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from odiseo.domain.models import Attachment, AttemptResult, Outcome, Status
from odiseo.storage.contract import Store
from tests.support.factories import new_email

T0 = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


def later(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


async def test_enqueue_then_get_round_trips_every_field(store: Store) -> None:
    item = new_email(
        cc=("c@example.com",),
        bcc=("b@example.com",),
        reply_to=("r@example.com",),
        headers=(("X-Tag", "v"),),
        text="plain",
        subject="Olá ✓",
    )
    (result,) = await store.enqueue([item], now=T0)
    assert result.created
    stored = await store.get(result.message_id)
    assert stored is not None
    assert stored.email == item.email
    assert stored.status is Status.PENDING
    assert (stored.attempts, stored.max_retries, stored.priority) == (0, 3, 5)
    assert stored.created_at == T0 and stored.next_attempt_at == T0
    assert await store.get("00000000-0000-0000-0000-000000000000") is None


async def test_claims_by_priority_then_age(store: Store) -> None:
    low = new_email(priority=9)
    old = new_email(priority=5)
    await store.enqueue([low], now=T0)
    await store.enqueue([old], now=later(1))
    young = new_email(priority=5)
    await store.enqueue([young], now=later(2))
    urgent = new_email(priority=0)
    await store.enqueue([urgent], now=later(3))
    claimed = await store.claim_due(limit=10, worker="w", lease_seconds=60, now=later(10))
    assert [m.message_id for m in claimed] == [
        urgent.email.message_id,
        old.email.message_id,
        young.email.message_id,
        low.email.message_id,
    ]
    assert all(m.status is Status.PROCESSING and m.attempts == 1 for m in claimed)
    assert all(m.locked_by == "w" and m.locked_until == later(70) for m in claimed)


async def test_limit_and_nothing_claimed_twice(store: Store) -> None:
    await store.enqueue([new_email() for _ in range(5)], now=T0)
    first = await store.claim_due(limit=3, worker="a", lease_seconds=60, now=T0)
    second = await store.claim_due(limit=3, worker="b", lease_seconds=60, now=T0)
    third = await store.claim_due(limit=3, worker="c", lease_seconds=60, now=T0)
    assert (len(first), len(second), len(third)) == (3, 2, 0)
    assert not {m.id for m in first} & {m.id for m in second}


async def test_scheduled_message_waits_for_its_time(store: Store) -> None:
    (result,) = await store.enqueue([new_email(send_at=later(600))], now=T0)
    stored = await store.get(result.message_id)
    assert stored is not None and stored.status is Status.SCHEDULED
    assert await store.claim_due(limit=5, worker="w", lease_seconds=60, now=later(599)) == []
    claimed = await store.claim_due(limit=5, worker="w", lease_seconds=60, now=later(600))
    assert [m.message_id for m in claimed] == [result.message_id]


async def test_past_send_at_is_pending_now(store: Store) -> None:
    (result,) = await store.enqueue([new_email(send_at=later(-60))], now=T0)
    stored = await store.get(result.message_id)
    assert stored is not None and stored.status is Status.PENDING


async def test_eight_concurrent_claimers_never_share_a_message(
    store: Store, more_stores: Callable[[], Store]
) -> None:
    await store.enqueue([new_email() for _ in range(200)], now=T0)
    claimers = [more_stores() for _ in range(8)]

    async def drain(claimer: Store, name: str) -> list[int]:
        got: list[int] = []
        while batch := await claimer.claim_due(limit=7, worker=name, lease_seconds=60, now=T0):
            got.extend(m.id for m in batch)
            await asyncio.sleep(0.005)  # let the others at the lock (SQLite: BEGIN IMMEDIATE)
        return got

    results = await asyncio.gather(*(drain(c, f"w{i}") for i, c in enumerate(claimers)))
    everything = [message_id for got in results for message_id in got]
    assert len(everything) == 200
    assert len(set(everything)) == 200
    assert sum(1 for got in results if got) >= 2  # the work really was shared


async def test_expired_lease_hands_the_message_to_another_worker(store: Store) -> None:
    (result,) = await store.enqueue([new_email()], now=T0)
    (held,) = await store.claim_due(limit=1, worker="dead", lease_seconds=30, now=T0)
    assert await store.claim_due(limit=1, worker="alive", lease_seconds=30, now=later(29)) == []
    (taken,) = await store.claim_due(limit=1, worker="alive", lease_seconds=30, now=later(31))
    assert taken.id == held.id and taken.locked_by == "alive" and taken.attempts == 2
    # The dead worker's late result does not overwrite the new owner's claim.
    stale = AttemptResult(
        email_id=held.id,
        attempt=1,
        outcome=Outcome.SENT,
        started_at=T0,
        finished_at=later(40),
        smtp_code=250,
        response="OK",
    )
    assert await store.record_results([stale], worker="dead", now=later(40)) == 0
    stored = await store.get(result.message_id)
    assert stored is not None and stored.status is Status.PROCESSING
    assert [e.kind for e in stored.events] == ["lease_expired", "sent"]


async def test_a_heartbeat_keeps_a_slow_worker_in_charge(store: Store) -> None:
    await store.enqueue([new_email(), new_email()], now=T0)
    held = [m.id for m in await store.claim_due(limit=2, worker="slow", lease_seconds=30, now=T0)]
    assert await store.heartbeat(held, worker="slow", lease_seconds=30, now=later(20)) == 2
    assert await store.claim_due(limit=1, worker="other", lease_seconds=30, now=later(40)) == []
    assert await store.heartbeat(held, worker="other", lease_seconds=30, now=T0) == 0
    # without its heartbeat, the slow worker's leases run out and its mail is retaken
    retaken = await store.claim_due(limit=2, worker="other", lease_seconds=30, now=later(51))
    assert len(retaken) == 2


async def test_a_heartbeat_renews_only_the_messages_the_worker_knows_it_holds(
    store: Store,
) -> None:
    """A claim can commit while its answer is lost: renewing every lease in the worker's
    name kept such messages `processing` for as long as the worker lived."""
    await store.enqueue([new_email(), new_email()], now=T0)
    known, unseen = await store.claim_due(limit=2, worker="w", lease_seconds=30, now=T0)
    assert await store.heartbeat([known.id], worker="w", lease_seconds=30, now=later(20)) == 1
    (retaken,) = await store.claim_due(limit=2, worker="other", lease_seconds=30, now=later(31))
    assert retaken.id == unseen.id


async def test_strays_are_handed_back_and_what_the_worker_holds_is_not(store: Store) -> None:
    """release_strays hands back what is leased to the worker beyond what it holds, as
    if never claimed; other workers' messages are not touched."""
    await store.enqueue([new_email() for _ in range(4)], now=T0)
    kept, stray, retried = await store.claim_due(limit=3, worker="w", lease_seconds=300, now=T0)
    (other,) = await store.claim_due(limit=1, worker="x", lease_seconds=300, now=T0)
    await store.record_results(
        [AttemptResult(email_id=retried.id, attempt=1, outcome=Outcome.RETRY, started_at=T0,
                       finished_at=later(1), next_attempt_at=later(2), smtp_code=451,
                       response="451 later")], worker="w", now=later(1),
    )  # fmt: skip
    (retried,) = await store.claim_due(limit=1, worker="w", lease_seconds=300, now=later(2))

    assert await store.release_strays([kept.id], worker="w", now=later(3)) == 2
    states = {}
    for message in (kept, stray, retried, other):
        stored = await store.get(message.message_id)
        assert stored is not None
        states[message.id] = (stored.status, stored.attempts, stored.locked_by)
    assert states == {
        kept.id: (Status.PROCESSING, 1, "w"),
        stray.id: (Status.PENDING, 0, None),
        retried.id: (Status.SCHEDULED, 1, None),
        other.id: (Status.PROCESSING, 1, "x"),
    }
    assert await store.release_strays([kept.id], worker="w", now=later(4)) == 0
    again = await store.claim_due(limit=5, worker="y", lease_seconds=300, now=later(4))
    assert {m.id for m in again} == {stray.id, retried.id}


async def test_a_result_written_twice_is_logged_once(store: Store) -> None:
    """A write retried after it had in fact committed (its answer lost) adds nothing."""
    (queued,) = await store.enqueue([new_email()], now=T0)
    (held,) = await store.claim_due(limit=1, worker="w", lease_seconds=30, now=T0)
    result = AttemptResult(email_id=held.id, attempt=1, outcome=Outcome.SENT, started_at=T0,
                           finished_at=later(1), smtp_code=250, response="250 OK")  # fmt: skip
    assert await store.record_results([result], worker="w", now=later(1)) == 1
    assert await store.record_results([result], worker="w", now=later(2)) == 0
    stored = await store.get(queued.message_id)
    assert stored is not None and stored.status is Status.SENT
    assert [e.kind for e in stored.events] == ["sent"]


async def test_record_results_moves_messages_and_logs_attempts(store: Store) -> None:
    await store.enqueue([new_email(), new_email(), new_email()], now=T0)
    sent, retry, failed = await store.claim_due(limit=3, worker="w", lease_seconds=30, now=T0)
    results = [
        AttemptResult(email_id=sent.id, attempt=1, outcome=Outcome.SENT, started_at=T0,
                      finished_at=later(1), smtp_code=250, response="250 OK"),
        AttemptResult(email_id=retry.id, attempt=1, outcome=Outcome.RETRY, started_at=T0,
                      finished_at=later(1), next_attempt_at=later(301), smtp_code=451,
                      response="451 try later"),
        AttemptResult(email_id=failed.id, attempt=1, outcome=Outcome.FAILED, started_at=T0,
                      finished_at=later(1), smtp_code=550, response="550 no such user"),
    ]  # fmt: skip
    assert await store.record_results(results, worker="w", now=later(1)) == 3
    got_sent = await store.get(sent.message_id)
    got_retry = await store.get(retry.message_id)
    got_failed = await store.get(failed.message_id)
    assert got_sent is not None and got_retry is not None and got_failed is not None
    assert got_sent.status is Status.SENT and got_sent.sent_at == later(1)
    assert got_sent.locked_by is None and got_sent.last_error is None
    assert got_retry.status is Status.SCHEDULED and got_retry.next_attempt_at == later(301)
    assert got_retry.last_error == "451 try later"
    assert got_failed.status is Status.FAILED and got_failed.last_error == "550 no such user"
    (event,) = got_failed.events
    assert (event.kind, event.attempt, event.smtp_code, event.duration_ms) == (
        "failed",
        1,
        550,
        1000,
    )
    # The scheduled retry comes back when due, with its attempt count kept.
    assert await store.claim_due(limit=5, worker="w", lease_seconds=30, now=later(300)) == []
    (again,) = await store.claim_due(limit=5, worker="w", lease_seconds=30, now=later(301))
    assert again.id == retry.id and again.attempts == 2


async def test_release_hands_back_unattempted_messages(store: Store) -> None:
    await store.enqueue([new_email()], now=T0)
    (held,) = await store.claim_due(limit=1, worker="w", lease_seconds=300, now=T0)
    assert await store.release([held.id], worker="w", now=later(1)) == 1
    stored = await store.get(held.message_id)
    assert stored is not None
    assert (stored.status, stored.attempts, stored.locked_by) == (Status.PENDING, 0, None)
    (again,) = await store.claim_due(limit=1, worker="x", lease_seconds=300, now=later(1))
    assert again.attempts == 1


async def test_counts_cover_every_status(store: Store) -> None:
    await store.enqueue([new_email(), new_email(), new_email(send_at=later(60))], now=T0)
    await store.claim_due(limit=1, worker="w", lease_seconds=30, now=T0)
    counts = await store.counts()
    assert counts == {
        Status.PENDING: 1,
        Status.SCHEDULED: 1,
        Status.PROCESSING: 1,
        Status.SENT: 0,
        Status.FAILED: 0,
        Status.CANCELLED: 0,
        Status.SUPPRESSED: 0,
    }


async def test_client_message_id_stores_once(store: Store) -> None:
    first = new_email(client_message_id="order-1", payload_hash="h1")
    again = new_email(client_message_id="order-1", payload_hash="h1")
    different = new_email(client_message_id="order-1", payload_hash="h2")
    (a,) = await store.enqueue([first], now=T0)
    (b,) = await store.enqueue([again], now=T0)
    (c,) = await store.enqueue([different], now=T0)
    assert a.created and not b.created and not c.created
    assert a.message_id == b.message_id == c.message_id == first.email.message_id
    assert b.same_payload and not c.same_payload
    assert (await store.counts())[Status.PENDING] == 1


async def test_twenty_racing_requests_with_one_client_id_store_one(
    store: Store, more_stores: Callable[[], Store]
) -> None:
    racers = [more_stores() for _ in range(4)]
    items = [new_email(client_message_id="race", payload_hash="h") for _ in range(20)]
    results = await asyncio.gather(
        *(racers[i % 4].enqueue([item], now=T0) for i, item in enumerate(items))
    )
    ids = {result.message_id for (result,) in results}
    assert len(ids) == 1
    assert sum(result.created for (result,) in results) == 1
    assert (await store.counts())[Status.PENDING] == 1


async def test_migrating_again_and_concurrently_is_harmless(
    store: Store, more_stores: Callable[[], Store]
) -> None:
    await asyncio.gather(*(more_stores().migrate() for _ in range(4)))
    await store.enqueue([new_email()], now=T0)
    assert (await store.counts())[Status.PENDING] == 1


async def test_a_mixed_bulk_enqueue_stores_every_item_as_given(store: Store) -> None:
    """Plain, keyed, already-stored and attachment-carrying items in one call: on
    PostgreSQL the plain ones are COPYed and the others INSERTed, in one transaction."""
    (kept,) = await store.enqueue([new_email(client_message_id="kept", payload_hash="h")], now=T0)
    (other,) = await store.enqueue([new_email(client_message_id="other", payload_hash="h")], now=T0)
    files = (
        Attachment(filename="a.txt", content_type="text/plain", data=b"\x00\xffbytes"),
        Attachment(filename="i.png", content_type="image/png", data=b"png", content_id="logo"),
    )
    plain = [
        new_email(
            to=f"p{n}@example.com",
            subject=f"Olá ✓ {n}",
            cc=("c@example.com",) if n % 2 else (),
            headers=(("X-Tag", f"v{n}"),),
            text="plain \x7f text" if n % 3 else None,
            send_at=later(600) if n == 4 else None,
        )
        for n in range(12)
    ]
    keyed = [new_email(client_message_id=f"k{n}", payload_hash="h") for n in range(3)]
    carrying = [new_email(attachments=files) for _ in range(2)]
    again = new_email(client_message_id="kept", payload_hash="h")
    clash = new_email(client_message_id="other", payload_hash="different")
    items = [*plain[:6], keyed[0], again, *carrying, *plain[6:], clash, *keyed[1:]]

    results = await store.enqueue(items, now=T0)

    assert [r.created for r in results] == [item not in (again, clash) for item in items]
    assert results[items.index(again)].message_id == kept.message_id
    assert results[items.index(again)].same_payload
    assert results[items.index(clash)].message_id == other.message_id
    assert not results[items.index(clash)].same_payload
    for item, result in zip(items, results, strict=True):
        if not result.created:
            continue
        assert result.message_id == item.email.message_id
        stored = await store.get(result.message_id)
        assert stored is not None and stored.email == item.email
        assert stored.client_message_id == item.client_message_id
        expected = Status.SCHEDULED if item.send_at else Status.PENDING
        assert stored.status is expected
    counts = await store.counts()
    assert (counts[Status.PENDING], counts[Status.SCHEDULED]) == (2 + 11 + 3 + 2, 1)


async def test_a_key_repeated_within_a_bulk_enqueue_stores_its_first_item(
    store: Store,
) -> None:
    files = (Attachment(filename="a.txt", content_type="text/plain", data=b"a"),)
    items = [new_email() for _ in range(10)]
    first = new_email(client_message_id="twice", payload_hash="h")
    repeat = new_email(client_message_id="twice", payload_hash="h")
    conflicting = new_email(client_message_id="twice", payload_hash="other")
    carrying = new_email(client_message_id="files", payload_hash="f", attachments=files)
    after_files = new_email(client_message_id="files", payload_hash="f")
    items[2:2] = [first, carrying]
    items += [repeat, after_files, conflicting]

    outcomes = await store.enqueue(items, now=T0)
    results = {item.email.message_id: r for item, r in zip(items, outcomes, strict=True)}

    assert results[first.email.message_id].created
    assert results[carrying.email.message_id].created
    for later_item, original, same in (
        (repeat, first, True),
        (conflicting, first, False),
        (after_files, carrying, True),
    ):
        outcome = results[later_item.email.message_id]
        assert not outcome.created
        assert outcome.message_id == original.email.message_id
        assert outcome.same_payload is same
    assert await store.get(repeat.email.message_id) is None
    stored = await store.get(carrying.email.message_id)
    assert stored is not None and stored.email.attachments == files
    assert (await store.counts())[Status.PENDING] == 12
