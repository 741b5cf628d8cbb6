"""Webhook deliveries to a real receiver, each verified with the `standardwebhooks`
package (an implementation we did not write), on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from standardwebhooks.webhooks import WebhookVerificationError

from odiseo.domain.webhooks import DeliveryStatus
from odiseo.storage.contract import Store
from tests.delivery.webhooks.conftest import hook_worker, later, publish, running, service, until
from tests.support.receiver import Receiver


async def delivered(store: Store, endpoint_id: str) -> list[DeliveryStatus]:
    page, _ = await store.webhooks.deliveries(endpoint_id, limit=100, before=None)
    return [d.status for d in page]


async def test_every_delivery_verifies_and_a_tampered_one_does_not(
    store: Store, receiver: Receiver
) -> None:
    endpoint, secret = await service(store).create(
        url=receiver.url, events=["relay.throttled"], description=None, now=later(timedelta())()
    )
    events = await publish(store, 3)
    async with running(hook_worker(store)):
        await until(lambda: len(receiver.hits) >= 3, what="three deliveries")
    bodies = [hit.verify(secret) for hit in receiver.hits]
    assert sorted(b["data"]["event_id"] for b in bodies) == events
    assert {b["type"] for b in bodies} == {"relay.throttled"}
    assert all(set(b) == {"type", "timestamp", "data"} for b in bodies)
    hit = receiver.hits[0]
    assert hit.headers["content-type"] == "application/json"
    tampered = hit.body.replace(b'"n":', b'"n": ')
    with pytest.raises(WebhookVerificationError):
        type(hit)(hit.path, hit.headers, tampered).verify(secret)
    other = await service(store).rotate(endpoint.id, now=later(timedelta())())
    with pytest.raises(WebhookVerificationError):
        hit.verify(other[1])  # a secret it was not signed with
    assert await delivered(store, endpoint.id) == [DeliveryStatus.SUCCEEDED] * 3


async def test_an_old_timestamp_fails_verification(store: Store, receiver: Receiver) -> None:
    """A delivery signed ten minutes ago (a replayed capture) is refused by the receiver's
    library: the timestamp is part of what is signed, and it is checked."""
    _, secret = await service(store).create(
        url=receiver.url, events=[], description=None, now=later(timedelta())()
    )
    await publish(store, 1)
    async with running(hook_worker(store, clock=later(timedelta(minutes=-10)))):
        await until(lambda: receiver.hits, what="a delivery")
    with pytest.raises(WebhookVerificationError, match="too old"):
        receiver.hits[0].verify(secret)


async def test_retries_keep_the_webhook_id_and_the_bytes(store: Store, receiver: Receiver) -> None:
    endpoint, secret = await service(store).create(
        url=receiver.url, events=[], description=None, now=later(timedelta())()
    )
    receiver.statuses.extend([500, 503])
    await publish(store, 1)
    async with running(hook_worker(store)):
        await until(lambda: len(receiver.hits) >= 3, what="three attempts")
    first, second, third = receiver.hits
    assert first.webhook_id == second.webhook_id == third.webhook_id
    assert first.body == second.body == third.body
    third.verify(secret)
    (delivery,), _ = await store.webhooks.deliveries(endpoint.id, limit=10, before=None)
    assert delivery.status is DeliveryStatus.SUCCEEDED and delivery.attempts == 3
    assert [a.status_code for a in delivery.history] == [500, 503, 200]
    assert all(a.response and len(a.response) == 500 for a in delivery.history)
    assert delivery.history[0].response.startswith("answer 500")  # type: ignore[union-attr]


async def test_a_receiver_down_for_a_while_gets_every_event_when_back(store: Store) -> None:
    """Nothing listens for a while (connections refused); then the receiver starts on that
    port and receives every event, each verifiable, de-duplicable by webhook-id."""
    down = Receiver()
    endpoint, secret = await service(store).create(
        url=down.url, events=[], description=None, now=later(timedelta())()
    )
    events = await publish(store, 20)
    worker = hook_worker(store, schedule=(0.0,) + (0.2,) * 200)
    async with running(worker):

        async def all_failed_once() -> bool:
            page, _ = await store.webhooks.deliveries(endpoint.id, limit=100, before=None)
            return len(page) == 20 and all(d.history and d.history[0].error for d in page)

        await until(all_failed_once, what="every delivery refused once")
        down.start()
        try:
            await until(
                lambda: {h.verify(secret)["data"]["event_id"] for h in down.hits} >= set(events),
                timeout=60,
                what="every event delivered",
            )
        finally:
            down.stop()
    unique = {hit.webhook_id: hit.verify(secret)["data"]["event_id"] for hit in down.hits}
    assert sorted(unique.values()) == events  # one webhook-id per event


async def test_410_disables_the_endpoint_with_an_event(store: Store, receiver: Receiver) -> None:
    hooks = service(store)
    now = later(timedelta())
    gone, _ = await hooks.create(url=receiver.url, events=[], description=None, now=now())
    watcher, _ = await hooks.create(
        url=receiver.url + "/watch", events=["webhook.disabled"], description=None, now=now()
    )
    receiver.status = 410
    await publish(store, 1)
    async with running(hook_worker(store)):
        await until(lambda: len(receiver.hits) >= 2, what="the 410, then the announcement")
    found = await hooks.get(gone.id)
    assert not found.enabled and found.disabled_reason == "the receiver answered 410 Gone"
    announced = json.loads(receiver.hits[1].body)
    assert announced["type"] == "webhook.disabled" and receiver.hits[1].path == "/hook/watch"
    assert announced["data"]["endpoint_id"] == gone.id
    assert (await hooks.get(watcher.id)).enabled is False  # it answered 410 too


async def test_redirects_are_not_followed(store: Store, receiver: Receiver) -> None:
    endpoint, _ = await service(store).create(
        url=receiver.url, events=[], description=None, now=later(timedelta())()
    )
    receiver.status = 307
    receiver.location = f"http://127.0.0.1:{receiver.port}/elsewhere"
    await publish(store, 1)
    async with running(hook_worker(store, schedule=(0.0,))):
        await until(lambda: _finished(store, endpoint.id), what="the one attempt recorded")
    assert [hit.path for hit in receiver.hits] == ["/hook"]
    (delivery,), _ = await store.webhooks.deliveries(endpoint.id, limit=10, before=None)
    assert delivery.status is DeliveryStatus.FAILED and delivery.last_status_code == 307


async def test_a_slow_receiver_times_out_and_is_retried(store: Store, receiver: Receiver) -> None:
    endpoint, _ = await service(store).create(
        url=receiver.url, events=[], description=None, now=later(timedelta())()
    )
    receiver.delay = 3.0
    await publish(store, 1)
    worker = hook_worker(store, timeout=0.3, schedule=(0.0, 3600.0), shutdown_seconds=0.1)
    async with running(worker):
        await until(lambda: _attempted(store, endpoint.id), what="the attempt recorded")
    (delivery,), _ = await store.webhooks.deliveries(endpoint.id, limit=10, before=None)
    assert delivery.status is DeliveryStatus.PENDING  # tried again an hour later
    assert delivery.history[0].error == "no answer within 0.3 s"
    assert delivery.history[0].status_code is None


async def test_concurrency_per_endpoint_is_bounded(store: Store, receiver: Receiver) -> None:
    _, secret = await service(store).create(
        url=receiver.url, events=[], description=None, now=later(timedelta())()
    )
    receiver.delay = 0.2
    await publish(store, 10)
    async with running(hook_worker(store, per_endpoint=2, slots=8)):
        await until(lambda: len(receiver.hits) >= 10, what="every delivery")
    assert receiver.peak <= 2
    assert len({hit.verify(secret)["data"]["event_id"] for hit in receiver.hits}) == 10


async def test_both_secrets_verify_while_a_rotation_overlaps(
    store: Store, receiver: Receiver
) -> None:
    hooks = service(store)
    endpoint, old = await hooks.create(
        url=receiver.url, events=[], description=None, now=later(timedelta())()
    )
    _, new = await hooks.rotate(endpoint.id, now=later(timedelta())())
    await publish(store, 1)
    async with running(hook_worker(store)):
        await until(lambda: receiver.hits, what="a delivery")
    hit = receiver.hits[0]
    assert hit.verify(old) == hit.verify(new)
    assert len(hit.headers["webhook-signature"].split(" ")) == 2


async def test_the_worker_counts_its_outcomes(store: Store, receiver: Receiver) -> None:
    await service(store).create(
        url=receiver.url, events=[], description=None, now=later(timedelta())()
    )
    receiver.statuses.extend([500])
    await publish(store, 2)
    worker = hook_worker(store)
    async with running(worker):
        await until(lambda: len(receiver.hits) >= 3, what="three attempts")
        counter = worker.metrics.webhook_deliveries
        await until(lambda: counter.labels(outcome="succeeded")._value.get() == 2, what="counted")
    assert counter.labels(outcome="retrying")._value.get() == 1


async def _finished(store: Store, endpoint_id: str) -> bool:
    return DeliveryStatus.PENDING not in await delivered(store, endpoint_id)


async def _attempted(store: Store, endpoint_id: str) -> bool:
    page, _ = await store.webhooks.deliveries(endpoint_id, limit=10, before=None)
    return bool(page and page[0].history)
