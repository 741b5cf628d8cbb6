"""API keys: who may call what (401, 403, allowed), where keys come from, that no log shows one."""

from __future__ import annotations

import hashlib
import logging
import re
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from odiseo.api.app import create_app
from odiseo.errors import ConfigError
from tests.security.conftest import EMAIL, wait_for_fresh_minute
from tests.support.app import (
    ADMIN_KEY,
    ALL_KEY,
    READ_KEY,
    SECRETS,
    SEND_KEY,
    ClientFactory,
    SettingsFactory,
    auth,
    stored_templates,
)

UNKNOWN = "00000000-0000-0000-0000-000000000000"
WRONG_KEY = "wrongkey-0123456789abcdef"

# (method, path, json body, the scope it needs)
ROUTES: list[tuple[str, str, object, str]] = [
    ("POST", "/emails", EMAIL, "send"),
    ("POST", "/emails/batch", {"emails": [EMAIL]}, "send"),
    ("GET", "/emails", None, "read"),
    ("GET", f"/emails/{UNKNOWN}", None, "read"),
    ("GET", "/queue/status", None, "read"),
    ("GET", "/templates", None, "read"),
    ("GET", "/templates/nope", None, "read"),
    ("POST", "/templates/nope/render", {"variables": {}}, "read"),
    ("PUT", "/templates/scoped", {"html": "<p>{{ name }}</p>"}, "admin"),
    ("DELETE", "/templates/nope", None, "admin"),
    ("POST", f"/emails/{UNKNOWN}/retry", None, "admin"),
    ("POST", f"/emails/{UNKNOWN}/cancel", None, "admin"),
    ("PATCH", f"/emails/{UNKNOWN}", {"send_at": "2030-01-01T00:00:00Z"}, "admin"),
    ("POST", "/emails/retry", None, "admin"),
    ("GET", "/webhooks", None, "admin"),
    ("POST", "/webhooks", {"url": "https://93.184.216.34/hooks"}, "admin"),
    ("GET", "/webhooks/wh_nope", None, "admin"),
    ("PATCH", "/webhooks/wh_nope", {"enabled": True}, "admin"),
    ("DELETE", "/webhooks/wh_nope", None, "admin"),
    ("POST", "/webhooks/wh_nope/rotate-secret", None, "admin"),
    ("POST", "/webhooks/wh_nope/test", None, "admin"),
    ("GET", "/webhooks/wh_nope/deliveries", None, "admin"),
    ("POST", "/webhooks/wh_nope/deliveries/1/replay", None, "admin"),
    ("POST", "/webhooks/wh_nope/replay", {"since": "2026-01-01T00:00:00Z"}, "admin"),
    ("GET", "/events", None, "read"),
    ("GET", "/suppressions", None, "read"),
    ("GET", "/suppressions/nobody@example.com", None, "read"),
    ("PUT", "/suppressions/somebody@example.com", {"reason": "manual"}, "admin"),
    ("DELETE", "/suppressions/nobody@example.com", None, "admin"),
    ("DELETE", "/recipients/nobody@example.com", None, "admin"),
    ("GET", "/audit", None, "admin"),
]
KEY_SCOPES = {
    SEND_KEY: {"send"},
    READ_KEY: {"read"},
    ADMIN_KEY: {"admin"},
    ALL_KEY: {"send", "read", "admin"},  # a key without scopes has them all
}


def label(key: str) -> str:
    return "key#" + hashlib.sha256(key.encode()).hexdigest()[:8]


async def call(
    client: httpx.AsyncClient, method: str, path: str, body: object, headers: dict[str, str]
) -> httpx.Response:
    if body is None:
        return await client.request(method, path, headers=headers)
    return await client.request(method, path, json=body, headers=headers)


async def test_every_route_asks_for_its_scope(client: httpx.AsyncClient) -> None:
    wrong: list[str] = []
    for method, path, body, scope in ROUTES:
        for key, scopes in KEY_SCOPES.items():
            response = await call(client, method, path, body, auth(key))
            allowed = scope in scopes
            if allowed and response.status_code in {401, 403, 500}:
                wrong.append(
                    f"{method} {path} with {scopes}: {response.status_code} {response.text}"
                )
            if not allowed and (
                response.status_code != 403 or scope not in response.json().get("detail", "")
            ):
                wrong.append(
                    f"{method} {path} with {scopes}: {response.status_code} {response.text}"
                )
    assert not wrong, "\n".join(wrong)


async def test_a_request_without_a_key_or_with_a_wrong_one_is_401(
    client: httpx.AsyncClient,
) -> None:
    wrong: list[str] = []
    for method, path, body, _ in ROUTES:
        for headers in (
            {},
            auth(WRONG_KEY),
            auth(ALL_KEY + "x"),
            auth(ALL_KEY[:-1]),
            {"Authorization": f"Basic {ALL_KEY}"},
            {"Authorization": "Bearer"},
            {"Authorization": f"Token {ALL_KEY}"},
        ):
            response = await call(client, method, path, body, headers)
            if (
                response.status_code != 401
                or response.headers.get("www-authenticate") != "Bearer"
                or not response.json().get("detail")
            ):
                wrong.append(f"{method} {path} {headers}: {response.status_code} {response.text}")
    assert not wrong, "\n".join(wrong)
    missing = await client.get("/queue/status")
    assert "Authorization: Bearer" in missing.json()["detail"], missing.text


async def test_an_unauthenticated_invalid_body_is_401_not_a_validation_report(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post("/emails", json={"to": "not an address", "extra": 1})
    assert response.status_code == 401, response.text
    assert "errors" not in response.json()


async def test_nothing_was_stored_by_refused_requests(client: httpx.AsyncClient) -> None:
    for key in (None, WRONG_KEY, READ_KEY, ADMIN_KEY):
        headers = auth(key) if key else {}
        response = await client.post("/emails", json=EMAIL, headers=headers)
        assert response.status_code in {401, 403}, response.text
        batch = await client.post("/emails/batch", json={"emails": [EMAIL]}, headers=headers)
        assert batch.status_code in {401, 403}, batch.text
    for key in (None, WRONG_KEY, SEND_KEY, READ_KEY):
        headers = auth(key) if key else {}
        saved = await client.put("/templates/t", json={"html": "<p>x</p>"}, headers=headers)
        assert saved.status_code in {401, 403}, saved.text
    status = await client.get("/queue/status", headers=auth(READ_KEY))
    assert status.json()["pending"] == 0, status.text
    templates = await client.get("/templates", headers=auth(READ_KEY))
    assert stored_templates(templates.json()) == [], templates.text


async def test_combined_scopes(make_settings: SettingsFactory, start_client: ClientFactory) -> None:
    key = "sendread-0123456789abcdef"
    client = await start_client(make_settings(api_keys=SecretStr(f"{key}:send+read")))
    assert (await client.post("/emails", json=EMAIL, headers=auth(key))).status_code == 202
    assert (await client.get("/queue/status", headers=auth(key))).status_code == 200
    refused = await client.put("/templates/t", json={"html": "x"}, headers=auth(key))
    assert refused.status_code == 403, refused.text


async def test_health_is_open_and_metrics_open_by_default(client: httpx.AsyncClient) -> None:
    health = await client.get("/health")
    assert health.status_code == 200, health.text
    metrics = await client.get("/metrics")
    assert metrics.status_code == 200, metrics.text
    with_bad_key = await client.get("/health", headers=auth(WRONG_KEY))
    assert with_bad_key.status_code == 200


async def test_metrics_can_require_a_read_key(
    make_settings: SettingsFactory, start_client: ClientFactory
) -> None:
    client = await start_client(make_settings(metrics_require_key=True))
    missing = await client.get("/metrics")
    assert missing.status_code == 401, missing.text
    assert missing.headers["www-authenticate"] == "Bearer"
    assert (await client.get("/metrics", headers=auth(WRONG_KEY))).status_code == 401
    assert (await client.get("/metrics", headers=auth(SEND_KEY))).status_code == 403
    assert (await client.get("/metrics", headers=auth(ADMIN_KEY))).status_code == 403
    for key in (READ_KEY, ALL_KEY):
        response = await client.get("/metrics", headers=auth(key))
        assert response.status_code == 200, response.text
        assert "odiseo_queue_messages" in response.text
    assert (await client.get("/health")).status_code == 200


async def test_keys_from_a_file(
    make_settings: SettingsFactory, start_client: ClientFactory, tmp_path: Path
) -> None:
    file = tmp_path / "keys"
    file.write_text(
        "# the send key of the shop\n"
        f"{SEND_KEY}:send\n"
        "\n"
        f"  {READ_KEY}:read  \n"
        "# an old key, kept as a comment: oldkey-0123456789abcdef\n"
    )
    settings = make_settings(api_keys=SecretStr(""), api_keys_file=file)
    client = await start_client(settings)
    assert (await client.post("/emails", json=EMAIL, headers=auth(SEND_KEY))).status_code == 202
    assert (await client.get("/queue/status", headers=auth(READ_KEY))).status_code == 200
    assert (await client.get("/queue/status", headers=auth(SEND_KEY))).status_code == 403
    commented = await client.get("/queue/status", headers=auth("oldkey-0123456789abcdef"))
    assert commented.status_code == 401, commented.text
    assert (await client.get("/queue/status")).status_code == 401


async def test_an_indented_comment_is_not_a_key(
    make_settings: SettingsFactory, start_client: ClientFactory, tmp_path: Path
) -> None:
    comment = "# the old shop key, revoked in March"
    file = tmp_path / "keys"
    file.write_text(f"{SEND_KEY}:send\n    {comment}\n")
    client = await start_client(make_settings(api_keys=SecretStr(""), api_keys_file=file))
    response = await client.put("/templates/t", json={"html": "x"}, headers=auth(comment))
    assert response.status_code == 401, response.text


async def test_keys_from_the_file_and_the_variable_add_up(
    make_settings: SettingsFactory, start_client: ClientFactory, tmp_path: Path
) -> None:
    file = tmp_path / "keys"
    file.write_text(f"{READ_KEY}:read\n")
    settings = make_settings(api_keys=SecretStr(f"{SEND_KEY}:send"), api_keys_file=file)
    client = await start_client(settings)
    assert (await client.post("/emails", json=EMAIL, headers=auth(SEND_KEY))).status_code == 202
    assert (await client.get("/queue/status", headers=auth(READ_KEY))).status_code == 200


@pytest.mark.parametrize(
    ("api_keys", "problem"),
    [
        pytest.param("short-key-12345", "at least 16", id="15-characters"),
        pytest.param(f"{SEND_KEY},tiny:send", "at least 16", id="one-short-key-of-two"),
        pytest.param(f"{SEND_KEY}:write", "scopes", id="unknown-scope"),
        pytest.param(f"{SEND_KEY}:send+root", "scopes", id="one-unknown-scope"),
        pytest.param(f"{SEND_KEY}:Send", "scopes", id="scope-case"),
        pytest.param(f"{SEND_KEY}:send,read", "at least 16", id="scope-split-by-a-comma"),
    ],
)
def test_a_bad_key_stops_the_app_from_being_built(
    make_settings: SettingsFactory, api_keys: str, problem: str
) -> None:
    settings = make_settings(api_keys=SecretStr(api_keys))
    with pytest.raises(ConfigError) as raised:
        create_app(settings)
    assert problem in raised.value.message
    assert "API_KEYS" in raised.value.message
    for secret in (SEND_KEY, "short-key-12345", "tiny"):
        assert secret not in str(raised.value)


def test_a_bad_key_in_the_file_stops_the_app_too(
    make_settings: SettingsFactory, tmp_path: Path
) -> None:
    file = tmp_path / "keys"
    file.write_text(f"{SEND_KEY}\nshort-one\n")
    with pytest.raises(ConfigError, match="at least 16"):
        create_app(make_settings(api_keys=SecretStr(""), api_keys_file=file))
    with pytest.raises(ConfigError, match="API_KEYS_FILE"):
        create_app(make_settings(api_keys=SecretStr(""), api_keys_file=tmp_path / "missing"))


async def test_keys_never_reach_the_logs(
    make_settings: SettingsFactory,
    start_client: ClientFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    wait_for_fresh_minute(margin=15)  # the limit below must be reached within one minute
    client = await start_client(
        make_settings(rate_limit_per_minute=2, metrics_require_key=True),
        raise_app_exceptions=False,
    )
    near_misses = [WRONG_KEY, ALL_KEY + "x", ALL_KEY.upper(), f"{SEND_KEY}:send"]
    for _ in range(3):  # the third request of each key is over the limit: logged by label
        for key in (*SECRETS, *near_misses):
            await client.post("/emails", json=EMAIL, headers=auth(key))
            await client.get("/queue/status", headers=auth(key))
            await client.get("/metrics", headers=auth(key))
        await client.post("/emails", json={"to": ["bad"], "subject": ALL_KEY[:6]})
    await client.post("/emails", content=b"{", headers=auth(ALL_KEY))
    limited = await client.get("/emails", headers=auth(ALL_KEY))
    assert limited.status_code == 429, limited.text

    logged = caplog.text + "\n".join(
        f"{r.getMessage()} {r.args!r} {r.exc_text or ''}" for r in caplog.records
    )
    for secret in (*SECRETS, *near_misses):
        assert secret not in logged, f"{secret!r} appears in the logs"
    assert label(ALL_KEY) in logged, "the rate limiter should name the key by its label"
    for mention in re.findall(r"key#\w*", logged):
        assert re.fullmatch(r"key#[0-9a-f]{8}", mention), mention


async def test_admin_actions_are_audited_with_the_key_label_never_the_key(
    client: httpx.AsyncClient,
) -> None:
    """Issue 15: every admin action — who (the key's label), what, when, the answer."""
    await call(client, "PUT", "/suppressions/a@example.com", {"reason": "manual"}, auth(ADMIN_KEY))
    await call(client, "DELETE", "/suppressions/nobody@example.com", None, auth(ALL_KEY))
    await call(client, "PUT", "/suppressions/b@example.com", {}, auth(READ_KEY))  # 403: no entry
    await call(client, "GET", "/suppressions", None, auth(ADMIN_KEY))  # a read: no entry
    erased = await call(client, "DELETE", "/recipients/A@example.com", None, auth(ADMIN_KEY))
    assert erased.status_code == 200 and erased.json()["suppression"] is True
    audit = await call(client, "GET", "/audit", None, auth(ADMIN_KEY))
    entries = [
        (e["actor"], e["action"], e["target"], e["status_code"]) for e in audit.json()["items"]
    ]
    assert entries == [
        (label(ADMIN_KEY), "DELETE /recipients/{address}", "[erased]", 200),
        (label(ALL_KEY), "DELETE /suppressions/{address}", "/suppressions/nobody@example.com", 404),
        (label(ADMIN_KEY), "PUT /suppressions/{address}", "[erased]", 200),
    ]
    assert not any(secret in audit.text for secret in SECRETS)
