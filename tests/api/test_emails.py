"""The HTTP API through httpx + ASGITransport, on both stores."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

CURL_EXAMPLE = {
    "to": ["recipient@example.com"],
    "subject": "Hello from Odiseo",
    "body": "<h1>Welcome!</h1><p>Your email service is working.</p>",
}


async def status_counts(client: httpx.AsyncClient) -> dict[str, Any]:
    response = await client.get("/queue/status")
    assert response.status_code == 200
    return dict(response.json())


async def test_post_emails_answers_202_with_the_original_keys(client: httpx.AsyncClient) -> None:
    response = await client.post("/emails", json=CURL_EXAMPLE)
    assert response.status_code == 202
    body = response.json()
    assert {"status", "queued", "message_id", "detail", "timestamp"} <= set(body)
    assert (body["status"], body["queued"], body["detail"]) == (
        "accepted",
        True,
        "Email stored in queue",
    )
    uuid.UUID(body["message_id"])
    datetime.fromisoformat(body["timestamp"])
    assert (await status_counts(client))["pending"] == 1


async def test_get_email_shows_state_and_content(client: httpx.AsyncClient) -> None:
    message_id = (await client.post("/emails", json=CURL_EXAMPLE)).json()["message_id"]
    response = await client.get(f"/emails/{message_id}")
    assert response.status_code == 200
    email = response.json()
    assert email["message_id"] == message_id
    assert email["status"] == "pending"
    assert email["attempts"] == 0 and email["max_retries"] == 3
    assert email["to"] == ["recipient@example.com"]
    assert email["subject"] == "Hello from Odiseo"
    assert email["rfc_message_id"] == f"<{message_id}@odiseo.io>"
    assert email["events"] == [] and email["last_error"] is None


async def test_queue_status_has_the_original_keys(client: httpx.AsyncClient) -> None:
    body = await status_counts(client)
    assert {"pending", "scheduled", "processing", "sent", "failed", "timestamp"} <= set(body)
    assert all(body[k] == 0 for k in ("pending", "scheduled", "processing", "sent", "failed"))


async def test_health_is_ok_with_the_original_keys(client: httpx.AsyncClient) -> None:
    response = await client.get("/health")
    assert response.status_code == 200
    body = response.json()
    assert {"status", "db", "email_provider", "version", "timestamp"} <= set(body)
    assert (body["status"], body["db"], body["email_provider"], body["version"]) == (
        "ok",
        "ok",
        "ok",
        "1.0.0",
    )


async def test_same_client_message_id_answers_200_with_the_original_id(
    client: httpx.AsyncClient,
) -> None:
    payload = {**CURL_EXAMPLE, "client_message_id": "invoice-42"}
    first = await client.post("/emails", json=payload)
    second = await client.post("/emails", json=payload)
    assert first.status_code == 202 and second.status_code == 200
    assert second.json()["message_id"] == first.json()["message_id"]
    assert second.json()["duplicate"] is True
    assert (await status_counts(client))["pending"] == 1


async def test_twenty_concurrent_requests_with_one_client_id_create_one_message(
    client: httpx.AsyncClient,
) -> None:
    payload = {**CURL_EXAMPLE, "client_message_id": "signup-7"}
    responses = await asyncio.gather(*(client.post("/emails", json=payload) for _ in range(20)))
    codes = sorted(r.status_code for r in responses)
    assert codes == [200] * 19 + [202]
    assert len({r.json()["message_id"] for r in responses}) == 1
    assert (await status_counts(client))["pending"] == 1


async def test_idempotency_key_header_is_an_alias(client: httpx.AsyncClient) -> None:
    headers = {"Idempotency-Key": "key-1"}
    first = await client.post("/emails", json=CURL_EXAMPLE, headers=headers)
    second = await client.post("/emails", json=CURL_EXAMPLE, headers=headers)
    assert (first.status_code, second.status_code) == (202, 200)
    assert first.json()["message_id"] == second.json()["message_id"]


async def test_reusing_a_client_id_for_another_email_is_a_conflict(
    client: httpx.AsyncClient,
) -> None:
    await client.post("/emails", json={**CURL_EXAMPLE, "client_message_id": "x"})
    other = {**CURL_EXAMPLE, "subject": "Something else", "client_message_id": "x"}
    response = await client.post("/emails", json=other)
    assert response.status_code == 409
    assert "client_message_id" in response.json()["detail"]
    assert (await status_counts(client))["pending"] == 1


async def test_template_renders_subject_and_body(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/emails",
        json={
            "to": ["a@example.com"],
            "template_id": "order",
            "template_vars": {"number": 7, "name": "<Ana>"},
        },
    )
    assert response.status_code == 202
    email = (await client.get(f"/emails/{response.json()['message_id']}")).json()
    assert email["subject"] == "Your order 7"
    assert email["template_id"] == "order"


async def test_send_at_in_the_future_is_scheduled(client: httpx.AsyncClient) -> None:
    when = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    response = await client.post("/emails", json={**CURL_EXAMPLE, "send_at": when})
    assert response.status_code == 202
    assert (await status_counts(client))["scheduled"] == 1


async def test_allowed_sender_override(client: httpx.AsyncClient) -> None:
    ok = await client.post(
        "/emails", json={**CURL_EXAMPLE, "from_email": "news@acme.example", "from_name": "Acme"}
    )
    assert ok.status_code == 202
    refused = await client.post("/emails", json={**CURL_EXAMPLE, "from_email": "ceo@bank.example"})
    assert refused.status_code == 422
    assert "from_email" in refused.json()["detail"]


BAD_REQUESTS: list[tuple[str, Any, str]] = [
    ("no to", {"subject": "s", "body": "b"}, "to"),
    ("empty to", {"to": [], "subject": "s", "body": "b"}, "to"),
    ("to not a list", {"to": "a@example.com", "subject": "s", "body": "b"}, "to"),
    ("bad address", {"to": ["not-an-address"], "subject": "s", "body": "b"}, "to"),
    ("CRLF in subject", {"to": ["a@example.com"], "subject": "s\r\nBcc: x@y.z", "body": "b"},
     "subject"),
    ("LF in from_name", {"to": ["a@example.com"], "subject": "s", "body": "b",
                         "from_name": "A\nB"}, "from_name"),
    ("CRLF in header", {"to": ["a@example.com"], "subject": "s", "body": "b",
                        "headers": {"X-A": "1\r\nBcc: x@y.z"}}, "headers"),
    ("reserved header", {"to": ["a@example.com"], "subject": "s", "body": "b",
                         "headers": {"From": "x@y.z"}}, "headers"),
    ("no subject", {"to": ["a@example.com"], "body": "b"}, "subject"),
    ("no body", {"to": ["a@example.com"], "subject": "s"}, "body"),
    ("unknown template", {"to": ["a@example.com"], "template_id": "nope"}, "template"),
    ("missing template var", {"to": ["a@example.com"], "template_id": "order",
                              "template_vars": {"number": 1}}, "name"),
    ("unknown field", {**CURL_EXAMPLE, "bodyy": "x"}, "bodyy"),
    ("priority out of range", {**CURL_EXAMPLE, "priority": 99}, "priority"),
    ("too many recipients", {**CURL_EXAMPLE, "to": [f"u{i}@example.com" for i in range(51)]},
     "to"),
    ("wrong type", {**CURL_EXAMPLE, "subject": 12}, "subject"),
    ("not an object", ["to"], "body"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("payload", "field"), [(p, f) for _, p, f in BAD_REQUESTS], ids=[n for n, _, _ in BAD_REQUESTS]
)
async def test_bad_input_is_a_422_naming_the_field_and_writes_nothing(
    client: httpx.AsyncClient, payload: Any, field: str
) -> None:
    response = await client.post("/emails", json=payload)
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert isinstance(detail, str) and field in detail
    assert "Traceback" not in response.text
    counts = await status_counts(client)
    assert all(counts[k] == 0 for k in ("pending", "scheduled"))


async def test_malformed_json_is_a_4xx_with_detail(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/emails", content=b'{"to": [', headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 422
    assert isinstance(response.json()["detail"], str)


@pytest.mark.parametrize("message_id", [str(uuid.uuid4()), "not-a-uuid", "x" * 64])
async def test_unknown_message_is_404(client: httpx.AsyncClient, message_id: str) -> None:
    response = await client.get(f"/emails/{message_id}")
    assert response.status_code == 404
    assert "detail" in response.json()
