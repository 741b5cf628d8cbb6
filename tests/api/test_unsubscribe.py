"""One-click unsubscribe through the app (RFC 8058), on both stores: the headers a
message gets, the page a link opens, and the POST that suppresses its recipient."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from email import message_from_bytes, policy

import httpx
import pytest
from pydantic import SecretStr

from odiseo.api.app import create_app
from odiseo.config import Settings
from odiseo.mime import build_message
from tests.api.test_operations import store_of

PUBLIC = "https://mail.example.com"
EMAIL = {"to": ["reader@example.com"], "subject": "News", "body": "<p>b</p>"}


@pytest.fixture
async def unsubscribing(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    configured = settings.model_copy(
        update={
            "public_url": PUBLIC,
            "unsubscribe_secret": SecretStr("u" * 32),
            "unsubscribe_tags": "newsletter",
        }
    )
    app = create_app(configured)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://odiseo") as http:
            yield http


async def link_of(client: httpx.AsyncClient, body: dict[str, object]) -> str:
    answer = await client.post("/emails", json=body)
    assert answer.status_code == 202, answer.text
    stored = await store_of(client).get(answer.json()["message_id"])
    assert stored is not None
    raw = build_message(stored.email, date=datetime.now(UTC))
    parsed = message_from_bytes(raw, policy=policy.default)
    assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    url = str(parsed["List-Unsubscribe"]).strip("<>")
    assert url.startswith(f"{PUBLIC}/unsubscribe/")
    return url.removeprefix(PUBLIC)


async def test_one_click_suppresses_the_recipient_with_an_event(
    unsubscribing: httpx.AsyncClient,
) -> None:
    path = await link_of(unsubscribing, {**EMAIL, "unsubscribe": True})
    page = await unsubscribing.get(path, headers={"Host": "mail.example.com"})
    assert page.status_code == 200 and "reader@example.com" in page.text
    assert '<form method="post">' in page.text
    assert (await unsubscribing.get("/suppressions/reader@example.com")).status_code == 404

    done = await unsubscribing.post(
        path,
        content="List-Unsubscribe=One-Click",
        headers={"Content-Type": "application/x-www-form-urlencoded", "Host": "mail.example.com"},
    )
    assert done.status_code == 200 and "is unsubscribed" in done.text
    entry = (await unsubscribing.get("/suppressions/reader@example.com")).json()
    assert entry["reason"] == "unsubscribe"
    events = (await unsubscribing.get("/events", params={"type": "email.unsubscribed"})).json()
    assert [e["recipient"] for e in events["items"]] == ["reader@example.com"]
    # Further clicks, one after another or at once, change nothing and still answer.
    again = [await unsubscribing.post(path)]
    again += await asyncio.gather(*(unsubscribing.post(path) for _ in range(4)))
    assert [r.status_code for r in again] == [200] * 5
    events = (await unsubscribing.get("/events", params={"type": "email.unsubscribed"})).json()
    assert len(events["items"]) == 1
    assert (await unsubscribing.post("/emails", json=EMAIL)).json()["suppressed"] == [
        "reader@example.com"
    ]


async def test_a_configured_tag_asks_for_the_link(unsubscribing: httpx.AsyncClient) -> None:
    await link_of(unsubscribing, {**EMAIL, "tags": ["newsletter"]})
    answer = await unsubscribing.post("/emails", json={**EMAIL, "tags": ["receipt"]})
    stored = await store_of(unsubscribing).get(answer.json()["message_id"])
    assert stored is not None and stored.email.list_unsubscribe is None


async def test_bad_links_answer_with_a_page_and_change_nothing(
    unsubscribing: httpx.AsyncClient,
) -> None:
    path = await link_of(unsubscribing, {**EMAIL, "unsubscribe": True})
    for bad in (path[:-3] + "AAA", "/unsubscribe/nothing", "/unsubscribe/" + "x" * 600):
        for method in ("GET", "POST"):
            response = await unsubscribing.request(method, bad)
            assert response.status_code in {400, 422}, (method, bad, response.text)
    assert (await unsubscribing.get("/suppressions")).json()["items"] == []


async def test_unsubscribe_requests_that_cannot_be_honoured_are_422(
    unsubscribing: httpx.AsyncClient, client: httpx.AsyncClient
) -> None:
    for body in (
        {**EMAIL, "unsubscribe": True, "cc": ["other@example.com"]},
        {**EMAIL, "unsubscribe": True, "headers": {"List-Unsubscribe": "<mailto:u@x.example>"}},
    ):
        response = await unsubscribing.post("/emails", json=body)
        assert response.status_code == 422 and "unsubscribe" in response.json()["detail"].lower()
    plain = await client.post("/emails", json={**EMAIL, "unsubscribe": True})  # not configured
    assert plain.status_code == 422
    assert "PUBLIC_URL" in plain.json()["detail"]
    assert (await client.get("/unsubscribe/anything")).status_code == 404
    own = {**EMAIL, "headers": {"List-Unsubscribe": "<mailto:u@x.example>"}}
    assert (await client.post("/emails", json=own)).status_code == 202  # theirs stays theirs
