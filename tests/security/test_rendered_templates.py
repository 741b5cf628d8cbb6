"""Adversarial review of issue 11 at the API: inputs that get a 500, reach the message
unchecked, or pass a check the README describes, each against a real app on both stores.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from tests.security.conftest import (
    ALL_KEY,
    EMAIL,
    ClientFactory,
    SettingsFactory,
    auth,
    eventually,
    queue_counts,
)

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
async def test_a_template_that_renders_a_lone_surrogate_gets_a_4xx_review(
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


async def test_a_template_that_renders_nul_gets_an_answer_not_a_500_review(
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


async def test_a_container_type_guessed_from_the_file_name_is_not_attached_review(
    client: httpx.AsyncClient,
) -> None:
    """AttachmentIn refuses content_type multipart/* and message/* (lower-cased), and drops
    such a type when guessed from the name, but that check is case-sensitive:
    mimetypes.guess_type reads a `data:` file name's type as written, so the name
    `data:Multipart/mixed,report.pdf` is stored with content_type `Multipart/mixed` (202)
    and written as a base64 leaf with no boundary (NoBoundaryInMultipartDefect)."""
    content = base64.b64encode(b"%PDF-1.4 hello").decode()
    for filename in ("data:Multipart/mixed,report.pdf", "data:Message/rfc822,report.pdf"):
        payload = {**EMAIL, "attachments": [{"filename": filename, "content": content}]}
        response = await client.post("/emails", json=payload, headers=KEY)
        if response.status_code == 422:
            continue  # refused: fine
        assert response.status_code == 202, response.text
        stored = await client.get(f"/emails/{response.json()['message_id']}", headers=KEY)
        (attachment,) = stored.json()["attachments"]
        kind = attachment["content_type"].lower()
        assert not kind.startswith(("multipart/", "message/")), attachment


async def test_a_rendered_subject_is_bounded_like_a_posted_one_review(
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


async def test_a_cross_site_post_cannot_requeue_failed_mail_on_a_keyless_api_review(
    make_settings: SettingsFactory, start_client: ClientFactory
) -> None:
    """README, Security: "No cross-site requests… every body must be application/json…
    else 415, so such a request is never read." POST /emails/retry has no body, so the
    media-type check never runs: a page in the operator's browser (a form, or fetch with
    mode no-cors: a simple request, and Host 127.0.0.1:8001 passes the Host check) makes a
    keyless API queue every failed message again. /emails/{id}/retry and /cancel likewise."""
    settings = make_settings(api_keys=SecretStr(""), email_worker_poll_interval=0.1)
    client = await start_client(settings, raise_app_exceptions=False, with_worker=True)
    past = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    sent = await client.post("/emails", json={**EMAIL, "expires_at": past})
    assert sent.status_code == 202, sent.text

    async def failed() -> bool:
        return (await queue_counts(client))["failed"] == 1

    await eventually(failed, timeout=15, what="the expired message to fail")
    browser = {"Host": "127.0.0.1:8001", "Origin": "http://evil.example", "Accept": "*/*"}
    response = await client.post("/emails/retry", headers=browser)
    assert response.status_code in (403, 415), response.text
    assert (await queue_counts(client))["failed"] == 1


async def test_the_special_use_name_localhost_is_accepted_by_default_review(
    client: httpx.AsyncClient,
) -> None:
    """README: REFUSE_SPECIAL_USE_DOMAINS is off by default, so addresses at special-use
    names (it lists `.localhost`) "are accepted". `root@localhost`, the name itself and the
    commonest test address, is refused with 422 ("It should have a period"), as is any
    single-label intranet host (`ops@mailhub`)."""
    for address in ("root@localhost", "ops@mailhub"):
        response = await client.post("/emails", json={**EMAIL, "to": [address]}, headers=KEY)
        assert response.status_code == 202, f"{address}: {response.text}"
