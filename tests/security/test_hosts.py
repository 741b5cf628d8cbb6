"""Cross-site requests from a browser: no simple (preflight-free) POST is read, and a
Host header naming someone else's site (DNS rebinding) is refused."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest
from pydantic import SecretStr

from odiseo.api.hosts import HostPolicy
from tests.security.conftest import EMAIL, eventually, queue_counts
from tests.support.app import READ_KEY, ClientFactory, SettingsFactory, auth, stored_templates

ZERO = {
    "pending": 0,
    "scheduled": 0,
    "processing": 0,
    "sent": 0,
    "failed": 0,
    "cancelled": 0,
    "suppressed": 0,
}
JSON_TEXT = b'{"to": ["user@example.com"], "subject": "from a web page", "body": "<p>hi</p>"}'


def policy(api_host: str = "127.0.0.1", allowed_hosts: str = "") -> HostPolicy:
    return HostPolicy.from_settings(api_host=api_host, allowed_hosts=allowed_hosts)


@pytest.mark.parametrize(
    ("api_host", "allowed_hosts", "admitted", "refused"),
    [
        pytest.param(
            "127.0.0.1",
            "",
            ["127.0.0.1:8001", "localhost:8001", "LOCALHOST", "[::1]:8001", "localhost.",
             "127.0.0.1"],
            ["evil.example:8001", "evil.example", "127.0.0.2:8001", "localhost.evil.example",
             "127.0.0.1.nip.io", "[::2]:8001", "", "localhost:8001:1", "0x7f.1"],
            id="loopback",
        ),
        pytest.param(
            "127.0.0.1",
            "mail-api.example.com, Relay.internal",
            ["mail-api.example.com", "mail-api.example.com:443", "relay.internal:8001"],
            ["example.com", "api.example.com", "10.0.0.5"],
            id="loopback-behind-a-proxy",
        ),
        pytest.param(
            "10.0.0.5",
            "",
            ["10.0.0.5:8001", "localhost"],
            ["10.0.0.6:8001", "odiseo:8001"],
            id="one-private-address",
        ),
        pytest.param(
            "0.0.0.0",
            "",
            ["10.0.0.5:8001", "192.168.1.20", "[2001:db8::1]:8001", "localhost:8080"],
            ["odiseo:8001", "evil.example", "mail-api.example.com"],
            id="all-interfaces",
        ),
        pytest.param(
            "::",
            "email-service-api",
            ["email-service-api:8001", "[::1]", "172.18.0.3:8001"],
            ["postgres:5432", "evil.example"],
            id="all-interfaces-with-a-name",
        ),
        pytest.param("0.0.0.0", "*", ["evil.example", "anything:1", ""], [], id="check-off"),
    ],
)  # fmt: skip
def test_which_hosts_are_admitted(
    api_host: str, allowed_hosts: str, admitted: list[str], refused: list[str]
) -> None:
    hosts = policy(api_host, allowed_hosts)
    assert [h for h in admitted if not hosts.admits(h)] == []
    assert [h for h in refused if hosts.admits(h)] == []


@pytest.fixture
async def open_client(
    make_settings: SettingsFactory, start_client: ClientFactory
) -> httpx.AsyncClient:
    """The API as it runs with no keys: on loopback (127.0.0.1), open to whoever reaches it."""
    settings = make_settings(api_keys=SecretStr(""))  # allowed hosts: the harness's own name
    return await start_client(settings, raise_app_exceptions=False)


BROWSER = {"Host": "127.0.0.1:8001", "Origin": "http://evil.example", "Accept": "*/*"}


@pytest.mark.parametrize(
    ("path", "content_type"),
    [
        pytest.param("/emails", "text/plain;charset=UTF-8", id="fetch-string-body"),
        pytest.param("/emails", None, id="fetch-blob-body"),
        pytest.param("/emails", "application/x-www-form-urlencoded", id="form"),
        pytest.param("/emails", "multipart/form-data; boundary=----x", id="multipart-form"),
        pytest.param("/emails/batch", None, id="batch-blob-body"),
        pytest.param("/templates/welcome/render", "text/plain", id="render"),
    ],
)
async def test_a_cross_site_simple_post_is_refused_and_stores_nothing(
    open_client: httpx.AsyncClient, path: str, content_type: str | None
) -> None:
    """What a page on any site can make the operator's browser send without a preflight."""
    headers = dict(BROWSER)
    if content_type is not None:
        headers["Content-Type"] = content_type
    body = JSON_TEXT if path != "/emails/batch" else b'{"emails": [' + JSON_TEXT + b"]}"
    response = await open_client.post(path, content=body, headers=headers)
    assert response.status_code == 403, response.text  # its Origin is another site's
    assert "cross-site" in response.json()["detail"]
    del headers["Origin"]  # and without one (a browser always sends it), the media type
    response = await open_client.post(path, content=body, headers=headers)
    assert response.status_code == 415, response.text
    assert "application/json" in response.json()["detail"]
    assert (await queue_counts(open_client)) == ZERO


async def test_the_same_request_as_json_is_served(open_client: httpx.AsyncClient) -> None:
    """The control: a JSON request (which a browser sends cross-site only after a preflight
    the API does not grant) from a local client goes through."""
    headers = {"Host": "127.0.0.1:8001", "Content-Type": "application/json"}
    response = await open_client.post("/emails", content=JSON_TEXT, headers=headers)
    assert response.status_code == 202, response.text
    assert (await queue_counts(open_client))["pending"] == 1


@pytest.mark.parametrize(
    "host", ["evil.example:8001", "evil.example", "127.0.0.1.evil.example:8001", "[::2]:8001"]
)
async def test_a_rebound_name_is_refused_whatever_the_request(
    open_client: httpx.AsyncClient, host: str
) -> None:
    """DNS rebinding: the page's own name, now pointing at 127.0.0.1, is in Host; being
    same-origin, it may send JSON, so the Host is what must stop it."""
    headers = {"Host": host, "Content-Type": "application/json", "Origin": f"http://{host}"}
    for method, path, body in [
        ("POST", "/emails", JSON_TEXT),
        ("GET", "/emails", None),
        ("GET", "/health", None),
        ("PUT", "/templates/t", b'{"html": "x"}'),
    ]:
        response = await open_client.request(method, path, content=body, headers=headers)
        assert response.status_code == 421, response.text
        assert "API_ALLOWED_HOSTS" in response.json()["detail"]
    served = await open_client.get("/queue/status", headers={"Host": "localhost:8001"})
    assert served.status_code == 200
    assert (await queue_counts(open_client)) == ZERO
    templates = await open_client.get("/templates", headers={"Host": "localhost"})
    assert stored_templates(templates.json()) == []


async def test_a_listed_name_is_served(
    make_settings: SettingsFactory, start_client: ClientFactory
) -> None:
    client = await start_client(make_settings(api_allowed_hosts="mail-api.example.com,odiseo"))
    headers = {**auth(READ_KEY), "Host": "mail-api.example.com"}
    assert (await client.get("/queue/status", headers=headers)).status_code == 200
    refused = await client.get("/queue/status", headers={**auth(READ_KEY), "Host": "other"})
    assert refused.status_code == 421, refused.text
    assert (await client.post("/emails", json=EMAIL)).status_code == 401  # Host fine, no key


async def test_a_cross_site_post_cannot_requeue_failed_mail_on_a_keyless_api(
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
