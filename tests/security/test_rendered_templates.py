"""What a template renders is checked like what is posted: a value no posted field may
hold gets a 4xx (never a 500), on both stores."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.security.conftest import EMAIL
from tests.support.app import ALL_KEY, auth

KEY = auth(ALL_KEY)
SEND = {"to": ["user@example.com"], "template_id": "made"}


async def _store_template(client: httpx.AsyncClient, **parts: Any) -> None:
    response = await client.put("/templates/made", json={"subject": "Hi", **parts}, headers=KEY)
    assert response.status_code in (200, 201), response.text


def _answer_problems(what: str, response: httpx.Response) -> list[str]:
    if response.status_code >= 500 or response.status_code < 400:
        return [f"{what}: {response.status_code} {response.text[:200]}"]
    if not response.json().get("detail"):
        return [f"{what}: no detail in {response.text[:200]}"]
    return []


@pytest.mark.parametrize("html", ['<p>{{ "\\ud800" }}</p>', '<p>{{ "%c"|format(56000) }}</p>'])
async def test_a_template_that_renders_a_lone_surrogate_gets_a_4xx(
    client: httpx.AsyncClient, html: str
) -> None:
    """A Jinja string literal (or `format`) makes a lone surrogate, which the JSON checks
    refuse in every posted value; the template is saved (201), then its preview, a send
    and a batch holding it all answer 500 "internal error" — the batch losing its valid
    items with it. Bad input always gets a clear 4xx (brief), never a 500."""
    await _store_template(client, html=html)
    problems = _answer_problems(
        "render", await client.post("/templates/made/render", json={}, headers=KEY)
    )
    problems += _answer_problems("send", await client.post("/emails", json=SEND, headers=KEY))
    batch = await client.post("/emails/batch", json={"emails": [EMAIL, SEND]}, headers=KEY)
    if batch.status_code >= 500:
        problems.append(f"batch: {batch.status_code} {batch.text[:200]}")
    assert not problems, "\n".join(problems)


async def test_a_template_that_renders_nul_gets_an_answer_not_a_500(
    client: httpx.AsyncClient,
) -> None:
    """NUL is refused in every posted string ("NUL characters are not allowed"), but a
    template makes one with `{{ "\\x00" }}`: on PostgreSQL the send and the batch answer 500
    (a text column cannot hold NUL); on SQLite the same request is stored (202)."""
    await _store_template(client, html='<p>{{ "\\x00" }}</p>')
    send = await client.post("/emails", json=SEND, headers=KEY)
    batch = await client.post("/emails/batch", json={"emails": [EMAIL, SEND]}, headers=KEY)
    assert send.status_code < 500, send.text
    assert batch.status_code < 500, batch.text


async def test_a_rendered_subject_is_bounded_like_a_posted_one(
    client: httpx.AsyncClient,
) -> None:
    """A posted subject over 998 characters is a 422; the same subject made by a template
    is accepted (202) up to MAX_RENDERED_BYTES (1 MB). 200,000 characters become a header
    of about 240 KB, past Postfix's header_size_limit (102,400), which discards the excess:
    the relayed message loses its Subject's end and its DKIM signature fails."""
    posted = await client.post("/emails", json={**EMAIL, "subject": "x" * 999}, headers=KEY)
    assert posted.status_code == 422, posted.text
    await _store_template(client, subject='{{ "x" * 200000 }}', html="<p>x</p>")
    rendered = await client.post("/emails", json=SEND, headers=KEY)
    assert rendered.status_code == 422, rendered.text
    assert "subject" in rendered.json()["detail"], rendered.text
