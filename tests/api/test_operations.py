"""Operator repairs through the API: cancel, retry, bulk retry — on both stores."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx

from odiseo.domain.models import AttemptResult, Outcome
from odiseo.storage.contract import Store

EMAIL = {"to": ["a@example.com"], "subject": "s", "body": "<p>b</p>"}


def store_of(client: httpx.AsyncClient) -> Store:
    app = client._transport.app  # type: ignore[attr-defined]
    store: Store = app.state.service.store
    return store


async def post(client: httpx.AsyncClient) -> str:
    response = await client.post("/emails", json=EMAIL)
    assert response.status_code == 202
    return str(response.json()["message_id"])


async def fail_all(store: Store) -> None:
    """Claim everything due and record a permanent failure, as a worker would."""
    now = datetime.now(UTC)
    claimed = await store.claim_due(limit=100, worker="w", lease_seconds=60, now=now)
    results = [
        AttemptResult(email_id=m.id, attempt=m.attempts, outcome=Outcome.FAILED, started_at=now,
                      finished_at=now, smtp_code=550, response="550 mailbox unavailable")
        for m in claimed
    ]  # fmt: skip
    await store.record_results(results, worker="w", now=now)


async def test_cancel_a_pending_message(client: httpx.AsyncClient) -> None:
    message_id = await post(client)
    response = await client.post(f"/emails/{message_id}/cancel")
    assert response.status_code == 200
    assert response.json()["status"] == "cancelled"
    assert [e["kind"] for e in response.json()["events"]] == ["cancelled"]
    again = await client.post(f"/emails/{message_id}/cancel")
    assert again.status_code == 409 and "cancelled" in again.json()["detail"]


async def test_a_message_being_sent_cannot_be_cancelled(client: httpx.AsyncClient) -> None:
    message_id = await post(client)
    await store_of(client).claim_due(limit=1, worker="w", lease_seconds=60, now=datetime.now(UTC))
    response = await client.post(f"/emails/{message_id}/cancel")
    assert response.status_code == 409
    assert "processing" in response.json()["detail"]


async def test_retry_a_failed_message_keeps_its_history(client: httpx.AsyncClient) -> None:
    message_id = await post(client)
    not_failed = await client.post(f"/emails/{message_id}/retry")
    assert not_failed.status_code == 409
    await fail_all(store_of(client))
    response = await client.post(f"/emails/{message_id}/retry")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "pending" and body["attempts"] == 0
    assert [e["kind"] for e in body["events"]] == ["failed", "requeued"]


async def test_bulk_retry_of_failed_messages(client: httpx.AsyncClient) -> None:
    ids = [await post(client) for _ in range(3)]
    await fail_all(store_of(client))
    kept = await post(client)
    response = await client.post("/emails/retry?status=failed")
    assert response.status_code == 200 and response.json()["requeued"] == 3
    statuses = {(await client.get(f"/emails/{i}")).json()["status"] for i in ids}
    assert statuses == {"pending"}
    assert (await client.get(f"/emails/{kept}")).json()["events"] == []
    wrong = await client.post("/emails/retry?status=sent")
    assert wrong.status_code == 422 and "status" in wrong.json()["detail"]


async def test_operations_on_unknown_messages_are_404(client: httpx.AsyncClient) -> None:
    for action in ("cancel", "retry"):
        for message_id in ("00000000-0000-4000-8000-000000000000", "garbage"):
            response = await client.post(f"/emails/{message_id}/{action}")
            assert response.status_code == 404 and "detail" in response.json()
