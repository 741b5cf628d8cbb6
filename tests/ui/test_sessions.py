"""Signing in to the dashboard: key for cookie, scopes, CSRF, expiry, sign-out, loopback.

Over httpx on the real app and both stores; the browser tests (test_browser.py) do the
same through Chromium.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import iter_route_contexts

from odiseo.api.app import create_app
from odiseo.storage.tables import ui_sessions
from tests.support.app import (
    ADMIN_KEY,
    BASE_URL,
    READ_KEY,
    SEND_KEY,
    ClientFactory,
    SettingsFactory,
    auth,
)
from tests.ui.conftest import csrf_of, sign_in


async def test_pages_send_a_visitor_without_a_session_to_sign_in(client: httpx.AsyncClient) -> None:
    for path in ["/ui/", "/ui/messages", "/ui/templates", "/ui/suppressions", "/ui/webhooks"]:
        answer = await client.get(path)
        assert answer.status_code == 303, path
        assert answer.headers["location"].startswith("/ui/sign-in?next=")
    htmx = await client.get("/ui/overview/live", headers={"HX-Request": "true"})
    assert htmx.status_code == 401 and htmx.headers["HX-Redirect"].startswith("/ui/sign-in")


async def test_a_key_becomes_a_strict_httponly_session_cookie_and_never_shows_again(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    form = await client.get("/ui/sign-in")
    answer = await client.post(
        "/ui/sign-in", data={"csrf": csrf_of(form.text), "key": ADMIN_KEY, "next": "/ui/messages"}
    )
    assert answer.status_code == 303 and answer.headers["location"] == "/ui/messages"
    cookie = next(c for c in answer.headers.get_list("set-cookie") if "odiseo_session=" in c)
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/ui" in cookie
    assert "Secure" not in cookie  # plain http here; see the https test below
    assert ADMIN_KEY not in cookie and ADMIN_KEY not in answer.headers["location"]
    for path in ["/ui/", "/ui/messages", "/ui/templates", "/ui/suppressions", "/ui/webhooks"]:
        page = await client.get(path)
        assert page.status_code == 200, path
        assert ADMIN_KEY not in page.text
    assert ADMIN_KEY not in caplog.text
    assert "key#" in caplog.text  # the sign-in is logged by the key's label


async def test_the_cookie_is_secure_behind_https(client: httpx.AsyncClient) -> None:
    transport = httpx.ASGITransport(app=client._transport.app)  # type: ignore[attr-defined]
    async with httpx.AsyncClient(transport=transport, base_url="https://odiseo") as https:
        form = await https.get("/ui/sign-in")
        answer = await https.post("/ui/sign-in", data={"csrf": csrf_of(form.text), "key": READ_KEY})
    assert answer.status_code == 303, answer.text
    cookie = next(c for c in answer.headers.get_list("set-cookie") if "odiseo_session=" in c)
    assert "Secure" in cookie


async def test_wrong_keys_and_send_only_keys_are_refused(client: httpx.AsyncClient) -> None:
    for key, expected in [("wrongkey-0123456789abcdef", "Wrong API key"), (SEND_KEY, "scope")]:
        form = await client.get("/ui/sign-in")  # each answer comes with a new form token
        answer = await client.post("/ui/sign-in", data={"csrf": csrf_of(form.text), "key": key})
        assert answer.status_code == 401 and expected in answer.text
        assert key not in answer.text
        assert "odiseo_session" not in client.cookies


async def test_the_sign_in_form_needs_its_own_csrf_token(client: httpx.AsyncClient) -> None:
    await client.get("/ui/sign-in")  # sets the form's cookie
    answer = await client.post("/ui/sign-in", data={"csrf": "forged", "key": ADMIN_KEY})
    assert answer.status_code == 403 and "odiseo_session" not in client.cookies


async def test_a_read_key_sees_but_cannot_act(client: httpx.AsyncClient) -> None:
    csrf = await sign_in(client, READ_KEY)
    page = await client.get("/ui/suppressions")
    assert page.status_code == 200 and "Add</button>" not in page.text
    refused = await client.post(
        "/ui/suppressions", data={"csrf": csrf, "address": "someone@example.com"}
    )
    assert refused.status_code == 403 and "admin" in refused.json()["detail"]
    listed = await client.get("/suppressions", headers=auth(READ_KEY))
    assert listed.json()["items"] == []


async def test_every_change_needs_the_session_csrf_token(client: httpx.AsyncClient) -> None:
    csrf = await sign_in(client, ADMIN_KEY)
    for sent in [{}, {"csrf": "not-the-token"}]:
        answer = await client.post("/ui/suppressions", data={**sent, "address": "a@example.com"})
        assert answer.status_code == 403, sent
    header = await client.post(
        "/ui/suppressions", data={"address": "a@example.com"}, headers={"X-CSRF-Token": csrf}
    )
    assert header.status_code == 303
    form = await client.post("/ui/suppressions", data={"csrf": csrf, "address": "b@example.com"})
    assert form.status_code == 303


async def test_sign_out_ends_the_session_server_side(client: httpx.AsyncClient) -> None:
    csrf = await sign_in(client, READ_KEY)
    token = client.cookies["odiseo_session"]
    answer = await client.post("/ui/sign-out", data={"csrf": csrf})
    assert answer.status_code == 303 and answer.headers["location"] == "/ui/signed-out"
    client.cookies.set("odiseo_session", token, path="/ui")  # a copy of the old cookie
    assert (await client.get("/ui/")).status_code == 303


async def test_a_session_expires_server_side(
    client: httpx.AsyncClient, settings: Any, start_client: ClientFactory
) -> None:
    await sign_in(client, READ_KEY)
    app: FastAPI = client._transport.app  # type: ignore[attr-defined]
    store = app.state.service.store
    later = datetime.now(UTC) + timedelta(hours=settings.ui_session_hours, seconds=1)
    found = await app.state.operations.session(client.cookies["odiseo_session"], now=later)
    assert found is None
    async with store.db.write() as tx:  # the clock moves past the end: the row says so
        await tx.run(ui_sessions.update().values(expires_at=datetime.now(UTC)))
    assert (await client.get("/ui/")).status_code == 303


async def test_a_key_taken_out_of_the_settings_ends_its_sessions(
    make_settings: SettingsFactory, start_client: ClientFactory
) -> None:
    first = await start_client(make_settings())
    await sign_in(first, READ_KEY)
    token = first.cookies["odiseo_session"]
    from pydantic import SecretStr

    second = await start_client(make_settings(api_keys=SecretStr(ADMIN_KEY)))
    second.cookies.set("odiseo_session", token, path="/ui")
    assert (await second.get("/ui/")).status_code == 303


async def test_without_keys_the_dashboard_is_open_with_the_same_csrf_rule(
    make_settings: SettingsFactory, start_client: ClientFactory
) -> None:
    from pydantic import SecretStr

    client = await start_client(make_settings(api_keys=SecretStr("")))
    opened = await client.get("/ui/sign-in?next=/ui/suppressions")
    assert opened.status_code == 303 and opened.headers["location"] == "/ui/suppressions"
    page = await client.get("/ui/suppressions")
    assert page.status_code == 200 and "Add</button>" in page.text
    refused = await client.post("/ui/suppressions", data={"address": "a@example.com"})
    assert refused.status_code == 403
    done = await client.post(
        "/ui/suppressions", data={"csrf": csrf_of(page.text), "address": "a@example.com"}
    )
    assert done.status_code == 303


async def test_the_host_and_origin_checks_cover_the_dashboard(client: httpx.AsyncClient) -> None:
    csrf = await sign_in(client, ADMIN_KEY)
    rebound = await client.get("/ui/", headers={"Host": "evil.example"})
    assert rebound.status_code == 421
    cross = await client.post(
        "/ui/suppressions",
        data={"csrf": csrf, "address": "a@example.com"},
        headers={"Origin": "http://evil.example"},
    )
    assert cross.status_code == 403


async def test_sign_in_redirects_only_within_the_dashboard(client: httpx.AsyncClient) -> None:
    for target in ["https://evil.example/", "//evil.example/ui/", "/ui//evil.example", "/docs"]:
        form = await client.get("/ui/sign-in")
        answer = await client.post(
            "/ui/sign-in", data={"csrf": csrf_of(form.text), "key": READ_KEY, "next": target}
        )
        assert answer.headers["location"] == "/ui/", target


async def test_the_session_is_checked_before_a_body_is_read(
    make_settings: SettingsFactory,
) -> None:
    """Every POST of the dashboard but the sign-in answers without reading its body when
    there is no session, and a read session's change is refused before the body too."""
    app = create_app(make_settings())
    reads: list[int] = []

    async def counting(scope: Any, receive: Any, send: Any) -> None:
        reads.append(0)

        async def counted() -> Any:
            reads[-1] += 1
            return await receive()

        await app(scope, counted, send)

    posts = sorted(
        str(c.path)
        for c in iter_route_contexts(app.routes)
        if str(c.path).startswith("/ui/") and "POST" in (c.methods or ())
    )
    assert len(posts) >= 8, posts
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=counting)
        async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as client:
            for path in posts:
                if path == "/ui/sign-in":
                    continue
                url = path.replace("{message_id}", "x").replace("{template_id}", "x")
                url = url.replace("{endpoint_id}", "x").replace("{delivery_id}", "1")
                answer = await client.post(url, content=b"csrf=x&" + b"a" * 1000)
                assert answer.status_code == 401, (path, answer.text)
                assert reads[-1] == 0, path
            await sign_in(client, READ_KEY)
            answer = await client.post("/ui/suppressions", content=b"address=a%40example.com")
            assert answer.status_code == 403 and reads[-1] == 0
