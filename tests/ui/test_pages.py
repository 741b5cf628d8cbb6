"""The dashboard's pages over httpx on both stores: what they show, the headers they
carry, the actions they take (through the services, as the API's), and the vendored
assets behind them and behind /docs and /redoc."""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from odiseo.api.app import create_app
from odiseo.dashboard.web import STATIC
from odiseo.domain.throttle import Policy, Scope, Signal
from odiseo.storage.contract import Limits, Store
from tests.support.app import (
    ADMIN_KEY,
    ALL_KEY,
    BASE_URL,
    READ_KEY,
    ClientFactory,
    SettingsFactory,
    auth,
)
from tests.ui.conftest import sign_in

HOSTILE_SUBJECT = '<script>alert("subject")</script>'
HOSTILE_HTML = '<p>hi</p><script>parent.pwned=1</script><img src=x onerror="parent.pwned=2">'


async def send(client: httpx.AsyncClient, **fields: Any) -> str:
    body = {"to": ["someone@example.com"], "subject": "Hello", "body": "<p>Hi</p>", **fields}
    answer = await client.post("/emails", json=body, headers=auth(ALL_KEY))
    assert answer.status_code == 202, answer.text
    return str(answer.json()["message_id"])


async def test_every_page_has_a_strict_policy_and_no_inline_script(
    client: httpx.AsyncClient,
) -> None:
    await sign_in(client, ADMIN_KEY)
    message_id = await send(client, subject=HOSTILE_SUBJECT, tags=["<b>tag</b>"])
    for path in [
        "/ui/",
        "/ui/overview/live",
        "/ui/messages",
        f"/ui/messages/{message_id}",
        "/ui/templates",
        "/ui/templates/order",
        "/ui/suppressions",
        "/ui/webhooks",
        "/ui/sign-in",
    ]:
        page = await client.get(path)
        assert page.status_code in (200, 303), path
        policy = page.headers["content-security-policy"]
        assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy, path
        assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
        assert page.headers["x-frame-options"] == "DENY"
        assert page.headers["x-content-type-options"] == "nosniff"
        scripts = re.findall(r"<script\b[^>]*>", page.text)
        assert all("src=" in tag for tag in scripts), (path, scripts)  # no inline script
        assert " style=" not in page.text, path  # no inline style, no inline handler:
        assert re.search(r"<[^>]*\son[a-z]+\s*=", page.text) is None, path
        assert "<script>alert" not in page.text, path  # the subject is escaped
        assert "<b>tag</b>" not in page.text, path


async def test_the_message_html_is_served_sandboxed_and_attachments_as_downloads(
    client: httpx.AsyncClient,
) -> None:
    await sign_in(client, READ_KEY)
    svg = b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'
    import base64

    message_id = await send(
        client,
        body=HOSTILE_HTML,
        attachments=[
            {"filename": "x.svg", "content": base64.b64encode(svg).decode(),
             "content_type": "image/svg+xml"},
        ],
    )  # fmt: skip
    detail = await client.get(f"/ui/messages/{message_id}")
    assert "parent.pwned" not in detail.text  # the HTML part is only in the frame's source
    assert f'sandbox src="/ui/messages/{message_id}/html"' in detail.text
    html = await client.get(f"/ui/messages/{message_id}/html")
    assert html.text == HOSTILE_HTML
    assert html.headers["content-security-policy"].startswith("sandbox;")
    assert "frame-ancestors 'self'" in html.headers["content-security-policy"]
    attachment = await client.get(f"/ui/messages/{message_id}/attachments/0")
    assert attachment.content == svg
    assert attachment.headers["content-disposition"] == "attachment; filename*=UTF-8''x.svg"
    assert attachment.headers["content-type"] == "application/octet-stream"
    assert attachment.headers["content-security-policy"].startswith("sandbox;")
    assert attachment.headers["x-content-type-options"] == "nosniff"
    assert (await client.get(f"/ui/messages/{message_id}/attachments/1")).status_code == 404


async def test_actions_go_through_the_service_and_its_rules(client: httpx.AsyncClient) -> None:
    csrf = await sign_in(client, ADMIN_KEY)
    later = await send(client)  # pending: no worker runs here
    moved = await client.post(
        f"/ui/messages/{later}/reschedule", data={"csrf": csrf, "send_at": "2031-02-03T04:05"}
    )
    assert moved.status_code == 303
    assert moved.headers["location"].endswith("?done=rescheduled")
    state = (await client.get(f"/emails/{later}", headers=auth(ALL_KEY))).json()
    assert state["status"] == "scheduled" and state["next_attempt_at"].startswith(
        "2031-02-03T04:05"
    )
    bad = await client.post(f"/ui/messages/{later}/reschedule", data={"csrf": csrf, "send_at": "x"})
    assert bad.status_code == 422 and "send_at" in bad.text
    cancelled = await client.post(f"/ui/messages/{later}/cancel", data={"csrf": csrf})
    assert cancelled.status_code == 303
    page = await client.get(cancelled.headers["location"])
    assert "The message is cancelled." in page.text
    again = await client.post(f"/ui/messages/{later}/cancel", data={"csrf": csrf})
    assert again.status_code == 409 and "the message is cancelled" in again.text
    retried = await client.post(f"/ui/messages/{later}/retry", data={"csrf": csrf})
    assert retried.status_code == 409  # only a failed message may be retried
    missing = await client.post(
        "/ui/messages/00000000-0000-4000-8000-000000000000/cancel", data={"csrf": csrf}
    )
    assert missing.status_code == 404
    events = (await client.get(f"/emails/{later}", headers=auth(ALL_KEY))).json()["events"]
    assert [e["kind"] for e in events] == ["rescheduled", "cancelled"]


async def test_a_scheduled_message_can_be_rescheduled(client: httpx.AsyncClient) -> None:
    csrf = await sign_in(client, ADMIN_KEY)
    message_id = await send(client, send_at="2030-05-06T07:08:00+00:00")
    detail = await client.get(f"/ui/messages/{message_id}")
    assert f'action="/ui/messages/{message_id}/reschedule"' in detail.text
    moved = await client.post(
        f"/ui/messages/{message_id}/reschedule",
        data={"csrf": csrf, "send_at": "2031-02-03T04:05"},
    )
    assert moved.status_code == 303, moved.text
    state = (await client.get(f"/emails/{message_id}", headers=auth(ALL_KEY))).json()
    assert state["status"] == "scheduled"
    assert state["next_attempt_at"].startswith("2031-02-03T04:05")


async def test_suppressions_are_validated_like_the_api(client: httpx.AsyncClient) -> None:
    csrf = await sign_in(client, ADMIN_KEY)
    bad = await client.post("/ui/suppressions", data={"csrf": csrf, "address": "not an address"})
    assert bad.status_code == 422 and "address" in bad.text
    added = await client.post(
        "/ui/suppressions",
        data={"csrf": csrf, "address": "Someone@Example.com", "detail": "asked by phone"},
    )
    assert added.status_code == 303
    listed = await client.get("/suppressions/someone@example.com", headers=auth(ALL_KEY))
    assert listed.json()["reason"] == "manual" and listed.json()["detail"] == "asked by phone"
    page = await client.get("/ui/suppressions?search=someone")
    assert "someone@example.com" in page.text
    removed = await client.post(
        "/ui/suppressions/remove", data={"csrf": csrf, "address": "someone@example.com"}
    )
    assert removed.status_code == 303
    gone = await client.post(
        "/ui/suppressions/remove", data={"csrf": csrf, "address": "someone@example.com"}
    )
    assert gone.status_code == 404


async def test_messages_are_searched_and_paged(client: httpx.AsyncClient) -> None:
    await sign_in(client, READ_KEY)
    ids = [await send(client, subject=f"number {n}", tags=[f"t{n % 2}"]) for n in range(55)]
    first = await client.get("/ui/messages")
    assert first.text.count('href="/ui/messages/') == 50
    assert ids[-1] in first.text and ids[4] not in first.text
    older = re.search(r'href="/ui/messages\?([^"]+)" rel="next"', first.text)
    assert older is not None
    second = await client.get("/ui/messages?" + older.group(1).replace("&amp;", "&"))
    assert second.text.count('href="/ui/messages/') == 5 and ids[0] in second.text
    tagged = await client.get("/ui/messages?tag=t1")
    assert ids[1] in tagged.text and ids[2] not in tagged.text
    recipient = await client.get("/ui/messages?recipient=nobody@example.com")
    assert "No messages match." in recipient.text
    later = await send(client, send_at="2031-01-01T00:00:00Z", subject="later one")
    scheduled = await client.get("/ui/messages?status=scheduled")
    assert scheduled.text.count('href="/ui/messages/') == 1 and later in scheduled.text
    future = datetime.now(UTC) + timedelta(hours=1)
    stamp = future.strftime("%Y-%m-%dT%H:%M")
    after = await client.get(f"/ui/messages?after={stamp}")  # created after: none yet
    assert "No messages match." in after.text
    before = await client.get(f"/ui/messages?before={stamp}&status=pending&tag=t0")
    assert ids[0] in before.text and ids[1] not in before.text and later not in before.text
    wrong = await client.get("/ui/messages?status=lost&after=yesterday")
    assert wrong.status_code == 422 and "status:" in wrong.text and "after:" in wrong.text


async def test_templates_are_saved_previewed_and_diffed(client: httpx.AsyncClient) -> None:
    csrf = await sign_in(client, ADMIN_KEY)
    form = {"csrf": csrf, "subject": "Hi {{ name }}", "sample_variables": '{"name": "Ana"}'}
    preview = await client.post(
        "/ui/templates/welcome2/preview", data={**form, "html": "<p>Hi {{ name }}</p>"}
    )
    assert preview.text == "<p>Hi Ana</p>"
    assert preview.headers["content-security-policy"].startswith("sandbox;")
    broken = await client.post(
        "/ui/templates/welcome2/preview", data={**form, "html": "<p>{{ missing }}</p>"}
    )
    assert broken.status_code == 422 and "missing" in broken.text
    for html in ["<p>Hi {{ name }}</p>", "<p>Hello {{ name }}</p>"]:
        saved = await client.post("/ui/templates/welcome2", data={**form, "html": html})
        assert saved.status_code == 303
    refused = await client.post("/ui/templates/welcome2", data={**form, "html": "{{ nope }}"})
    assert refused.status_code == 422
    stored = await client.get("/templates/welcome2", headers=auth(ALL_KEY))
    assert stored.json()["version"] == 2
    page = await client.get("/ui/templates/welcome2")
    assert '<span class="add">+&lt;p&gt;Hello {{ name }}&lt;/p&gt;</span>' in page.text
    listing = await client.get("/ui/templates")
    assert "welcome2" in listing.text and "order" in listing.text  # stored and file


async def test_the_overview_shows_counts_activity_failures_and_workers(features: Any) -> None:
    client = features.client
    features.smtp.handler.rcpt_replies["bad@refused.example"] = (
        "550 5.1.1 <bad@refused.example>: no"
    )
    await sign_in(client, READ_KEY)
    for _ in range(3):
        await send(client)
    await send(client, to=["bad@refused.example"])
    await features.deliver()
    page = await client.get("/ui/")
    assert page.status_code == 200
    found = re.findall(r'tile-n">([\d,]+)</span> <span class="status status-(\w+)', page.text)
    tiles = {status: n for n, status in found}
    assert tiles["sent"] == "3" and tiles["failed"] == "1" and tiles["pending"] == "0"
    assert "3 sent, 0 deferred, 1 failed" in page.text  # both charts
    assert '<td>refused.example</td><td class="num">1</td>' in page.text
    assert "&lt;address&gt;" in page.text  # the reason, its address taken out
    assert '<span class="status status-sent">alive</span>' in page.text
    live = await client.get("/ui/overview/live")
    assert live.text.lstrip().startswith('<div id="overview" hx-get="/ui/overview/live"')


LIMITED = {"smtp_max_per_day": 1000, "domain_limits": "example.com=2/h"}


@pytest.mark.parametrize("settings_overrides", [LIMITED])
async def test_the_overview_shows_the_sending_limits_and_throttles(features: Any) -> None:
    client = features.client
    await sign_in(client, READ_KEY)
    empty = await client.get("/ui/")
    assert "Nothing is throttled." in empty.text
    started = datetime.now(UTC)
    for _ in range(3):
        await send(client)  # to someone@example.com: two go out, the third waits
    assert await features.deliver() == 2
    limits = store_limits(features)
    policy = Policy(pause_seconds=600, max_pause_seconds=900)
    reply = "421 4.7.0 <slow> Try again later"
    await limits.throttled(
        Signal(scope=Scope.DOMAIN, domain="slow.example", reply=reply), now=started, policy=policy
    )
    relay = Signal(scope=Scope.RELAY, reply="421 too many connections")
    await limits.throttled(relay, now=started - timedelta(seconds=900), policy=policy)
    page = await client.get("/ui/")
    rows = re.findall(
        r"<tr><td>([^<]+)</td><td class=\"num\">([\d,]+)</td><td class=\"num\">([\d,]+)</td>"
        r"\s*<td><span class=\"status [\w-]+\">(\w+)</span>",
        page.text,
    )
    if started.hour == datetime.now(UTC).hour:  # no window ended meanwhile
        assert rows == [
            ("relay per day", "2", "1,000", "open"),
            ("example.com per hour", "2", "2", "exhausted"),
        ]
    else:
        assert [row[0] for row in rows] == ["relay per day", "example.com per hour"]
    throttled = page.text[page.text.index('id="throttles-h"') :]
    relay_at = throttled.index("<td>relay</td>")
    assert relay_at < throttled.index("<td>slow.example</td>")  # the relay first
    assert re.search(r"recovering, \d+/s", throttled[relay_at:]) is not None
    assert '<span class="status status-failed">paused</span>' in throttled
    assert "&lt;slow&gt; Try again later" in throttled  # escaped
    live = await client.get("/ui/overview/live")
    assert "slow.example" in live.text and "example.com per hour" in live.text


def store_limits(features: Any) -> Limits:
    store: Store = features.app.state.service.store
    return store.limits


async def test_admin_actions_are_marked_for_the_audit_log(
    make_settings: SettingsFactory,
) -> None:
    """A change made in the dashboard marks the request with the key's label, as
    api/auth.requires(ADMIN) does for the audit log; reads and keyless changes do not."""
    app = create_app(make_settings())
    marks: list[Any] = []

    async def watching(scope: Any, receive: Any, send_: Any) -> None:
        await app(scope, receive, send_)
        if scope["type"] == "http":
            marks.append((scope["method"], scope.get("state", {}).get("audit_actor")))

    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=watching)
        async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as client:
            csrf = await sign_in(client, ADMIN_KEY)
            marks.clear()
            await client.get("/ui/suppressions")
            await client.post("/ui/suppressions", data={"csrf": csrf, "address": "a@example.com"})
    assert marks[0] == ("GET", None)
    assert marks[1][0] == "POST" and marks[1][1].startswith("key#")


async def test_dashboard_actions_reach_the_audit_log(client: httpx.AsyncClient) -> None:
    csrf = await sign_in(client, ADMIN_KEY)
    await client.post("/ui/suppressions", data={"csrf": csrf, "address": "a@example.com"})
    await client.get("/ui/suppressions")  # a read: not audited
    entries = (await client.get("/audit", headers=auth(ALL_KEY))).json()["items"]
    (entry,) = [e for e in entries if e["action"].startswith("POST /ui/")]
    assert entry["action"] == "POST /ui/suppressions" and entry["status_code"] == 303
    assert entry["actor"].startswith("key#") and ADMIN_KEY not in str(entries)


async def test_ui_enabled_false_leaves_only_the_api_and_its_docs(
    make_settings: SettingsFactory, start_client: ClientFactory
) -> None:
    client = await start_client(make_settings(ui_enabled=False))
    assert (await client.get("/ui/")).status_code == 404
    assert (await client.get("/ui/sign-in")).status_code == 404
    assert (await client.get("/docs")).status_code == 200


async def test_docs_and_redoc_load_their_assets_from_this_service(
    client: httpx.AsyncClient,
) -> None:
    for path in ["/docs", "/redoc"]:
        page = await client.get(path)
        assert page.status_code == 200
        urls = re.findall(r'(?:src|href)=["\']([^"\']+)', page.text) + re.findall(
            r"url: '([^']+)'", page.text
        )
        assert not [u for u in urls if u.startswith(("http:", "https:", "//"))], urls
        for url in urls:
            if url.startswith("/assets/"):
                assert (await client.get(url)).status_code == 200, url


def test_the_vendored_files_are_those_vendored_md_names() -> None:
    vendor = STATIC / "vendor"
    table = (vendor / "VENDORED.md").read_text()
    rows = re.findall(r"^\| `([^`]+)`[^|]*\|[^|]*\|[^|]*\|[^|]*\| `([0-9a-f]{64})` \|$", table,
                      flags=re.MULTILINE)  # fmt: skip
    assert len(rows) == 4, rows
    for name, digest in rows:
        assert hashlib.sha256((vendor / Path(name)).read_bytes()).hexdigest() == digest, name
    for licence in ["htmx/LICENSE", "swagger-ui/LICENSE", "swagger-ui/NOTICE", "redoc/LICENSE"]:
        assert (vendor / licence).is_file()


async def test_keyless_changes_are_not_marked(
    make_settings: SettingsFactory, start_client: ClientFactory
) -> None:
    client = await start_client(make_settings(api_keys=SecretStr("")))
    assert (await client.get("/ui/sign-in")).status_code == 303
    assert (await client.get("/ui/")).status_code == 200
