"""GET /events, the suppression list under /suppressions, and what POST /emails says
about suppressed recipients — through the app, on both stores."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx

from odiseo.domain.models import AttemptResult, Outcome, Refusal
from tests.api.test_operations import post, store_of

GONE = Refusal(
    recipient="gone@example.com", code=550, response="550 5.1.1 user unknown", permanent=True
)


async def deliver_all(client: httpx.AsyncClient, *, refused: tuple[Refusal, ...] = ()) -> None:
    """Claim everything due and record it sent, as a worker would."""
    store = store_of(client)
    now = datetime.now(UTC)
    claimed = await store.claim_due(limit=100, worker="w", lease_seconds=60, now=now)
    results = [
        AttemptResult(
            email_id=m.id,
            message_id=m.message_id,
            attempt=m.attempts,
            outcome=Outcome.SENT,
            started_at=now,
            finished_at=now,
            smtp_code=250,
            response="250 ok",
            accepted=("a@example.com",),
            refused=refused,
            suppressed=m.suppressed,
        )
        for m in claimed
    ]
    await store.record_results(results, worker="w", now=now)


async def test_events_list_filter_and_show_on_the_message(client: httpx.AsyncClient) -> None:
    sent_id = await post(client)
    cancelled_id = await post(client)
    assert (await client.post(f"/emails/{cancelled_id}/cancel")).status_code == 200
    await deliver_all(client)

    events = (await client.get("/events")).json()
    assert [(e["type"], e["message_id"]) for e in events["items"]] == [
        ("email.sent", sent_id),
        ("email.cancelled", cancelled_id),
    ]
    sent = events["items"][0]
    assert sent["recipients"] == ["a@example.com"] and sent["smtp_code"] == 250
    assert sent["data"] == {"accepted": ["a@example.com"], "refused": []}
    only = (await client.get("/events", params={"type": "email.cancelled"})).json()["items"]
    assert [e["message_id"] for e in only] == [cancelled_id]
    mine = (await client.get("/events", params={"message_id": sent_id})).json()["items"]
    assert [e["type"] for e in mine] == ["email.sent"]
    detail = (await client.get(f"/emails/{sent_id}")).json()
    assert [(e["kind"], e["type"]) for e in detail["events"]] == [("sent", "email.sent")]


async def test_events_pages_follow_the_cursor(client: httpx.AsyncClient) -> None:
    for _ in range(3):
        await post(client)
    await deliver_all(client)
    first = (await client.get("/events", params={"limit": 2})).json()
    assert len(first["items"]) == 2 and first["next_cursor"]
    rest = (await client.get("/events", params={"cursor": first["next_cursor"]})).json()
    assert len(rest["items"]) == 1 and rest["next_cursor"] is None
    ids = [e["id"] for e in first["items"] + rest["items"]]
    assert len(set(ids)) == 3


async def test_bad_event_queries_are_422_with_a_detail(client: httpx.AsyncClient) -> None:
    for params in (
        {"type": "email.exploded"},
        {"cursor": "not-a-cursor"},
        {"cursor": "OTk5OTk5OTk5OTk5OTk5OTk5OQ"},
        {"limit": "0"},
        {"after": "yesterday"},
    ):
        response = await client.get("/events", params=params)
        assert response.status_code == 422, params
        assert response.json()["detail"]


async def test_a_suppressed_recipient_is_named_in_the_202(client: httpx.AsyncClient) -> None:
    put = await client.put("/suppressions/Gone@Example.com", json={"detail": "asked us"})
    assert put.status_code == 200
    assert put.json()["address"] == "gone@example.com" and put.json()["reason"] == "manual"
    body = {"to": ["a@example.com"], "cc": ["GONE@example.com"], "subject": "s", "body": "b"}
    answer = (await client.post("/emails", json=body)).json()
    assert answer["suppressed"] == ["GONE@example.com"]
    batch = {"emails": [body, {**body, "cc": []}]}
    items = (await client.post("/emails/batch", json=batch)).json()["results"]
    assert [i["suppressed"] for i in items] == [["GONE@example.com"], []]


async def test_a_bounce_suppresses_and_the_list_answers(client: httpx.AsyncClient) -> None:
    message_id = await post(client)
    await deliver_all(client, refused=(GONE,))
    found = await client.get("/suppressions/GONE@example.com")
    assert found.status_code == 200
    assert found.json()["reason"] == "hard_bounce" and found.json()["message_id"] == message_id
    bounced = (await client.get("/events", params={"type": "email.bounced"})).json()["items"]
    assert [(e["recipient"], e["smtp_code"]) for e in bounced] == [("gone@example.com", 550)]
    listed = (await client.get("/suppressions", params={"search": "gone"})).json()
    assert [s["address"] for s in listed["items"]] == ["gone@example.com"]
    assert (await client.delete("/suppressions/gone@example.com")).status_code == 204
    assert (await client.get("/suppressions/gone@example.com")).status_code == 404
    assert (await client.delete("/suppressions/gone@example.com")).status_code == 404


async def test_suppression_pages_and_bad_input(client: httpx.AsyncClient) -> None:
    for name in ("a", "b", "c"):
        assert (await client.put(f"/suppressions/{name}@example.com", json={})).status_code == 200
    first = (await client.get("/suppressions", params={"limit": 2})).json()
    rest = (await client.get("/suppressions", params={"cursor": first["next_cursor"]})).json()
    addresses = [s["address"] for s in first["items"] + rest["items"]]
    assert addresses == ["a@example.com", "b@example.com", "c@example.com"]
    for path, body in (
        ("/suppressions/not-an-address", {}),
        ("/suppressions/x@example.com", {"reason": "bored"}),
        ("/suppressions/x@example.com", {"extra": 1}),
    ):
        response = await client.put(path, json=body)
        assert response.status_code == 422 and response.json()["detail"], (path, body)
    wrong = await client.get("/suppressions", params={"reason": "bored"})
    assert wrong.status_code == 422
    later = datetime.now(UTC) + timedelta(days=1)
    assert (await client.get("/events", params={"after": later.isoformat()})).json()["items"] == []


async def test_an_international_domain_is_one_key_in_either_form(
    client: httpx.AsyncClient,
) -> None:
    """Messages store xn-- domains, and so does PUT: every suppression route, and the
    events filter, take the Unicode form of the same address as the same key."""
    put = await client.put("/suppressions/User@Bücher.de", json={})
    assert put.status_code == 200 and put.json()["address"] == "user@xn--bcher-kva.de"
    body = {"to": ["user@bücher.de"], "cc": ["b@example.com"], "subject": "s", "body": "b"}
    posted = (await client.post("/emails", json=body)).json()
    assert posted["suppressed"] == ["user@xn--bcher-kva.de"]
    for form in ("user@bücher.de", "USER@BÜCHER.DE", "user@XN--BCHER-KVA.de"):
        assert (await client.get(f"/suppressions/{form}")).status_code == 200, form
    await deliver_all(client)
    found = await client.get("/events", params={"recipient": "user@Bücher.de"})
    assert [e["type"] for e in found.json()["items"]] == ["email.suppressed", "email.sent"]
    assert (await client.delete("/suppressions/user@BÜCHER.de")).status_code == 204
    assert (await client.get("/suppressions/user@xn--bcher-kva.de")).status_code == 404
