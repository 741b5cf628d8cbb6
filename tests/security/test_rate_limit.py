"""RATE_LIMIT_PER_MINUTE: per key, counted in the store, so every API process shares it."""

from __future__ import annotations

import httpx

from tests.security.conftest import EMAIL, wait_for_fresh_minute
from tests.support.app import ALL_KEY, READ_KEY, SEND_KEY, ClientFactory, SettingsFactory, auth

LIMIT = 3


def assert_limited(response: httpx.Response) -> None:
    assert response.status_code == 429, response.text
    retry_after = response.headers.get("retry-after", "")
    assert retry_after.isdigit(), response.headers
    assert 1 <= int(retry_after) <= 60, retry_after
    detail = response.json()["detail"]
    assert f"{LIMIT} requests per minute" in detail, detail


async def test_the_request_over_the_limit_is_429_with_retry_after(
    make_settings: SettingsFactory, start_client: ClientFactory
) -> None:
    client = await start_client(make_settings(rate_limit_per_minute=LIMIT))
    wait_for_fresh_minute()
    for _ in range(LIMIT):
        response = await client.get("/queue/status", headers=auth(ALL_KEY))
        assert response.status_code == 200, response.text
    assert_limited(await client.get("/queue/status", headers=auth(ALL_KEY)))
    assert_limited(await client.post("/emails", json=EMAIL, headers=auth(ALL_KEY)))  # any route

    # other keys are counted on their own
    for _ in range(LIMIT):
        response = await client.post("/emails", json=EMAIL, headers=auth(SEND_KEY))
        assert response.status_code == 202, response.text
    assert_limited(await client.post("/emails", json=EMAIL, headers=auth(SEND_KEY)))
    assert (await client.get("/queue/status", headers=auth(READ_KEY))).json()["pending"] == LIMIT
    # /health stays open and uncounted
    assert (await client.get("/health")).status_code == 200


async def test_refused_keys_do_not_eat_a_valid_keys_budget(
    make_settings: SettingsFactory, start_client: ClientFactory
) -> None:
    client = await start_client(make_settings(rate_limit_per_minute=LIMIT))
    wait_for_fresh_minute()
    for _ in range(2 * LIMIT):
        assert (await client.get("/queue/status", headers=auth("x" * 24))).status_code == 401
        assert (await client.get("/queue/status")).status_code == 401
        assert (await client.get("/queue/status", headers=auth(SEND_KEY))).status_code == 403
    for _ in range(LIMIT):
        response = await client.get("/queue/status", headers=auth(READ_KEY))
        assert response.status_code == 200, response.text


async def test_two_api_instances_share_the_count(
    make_settings: SettingsFactory, start_client: ClientFactory
) -> None:
    """Two apps on the same database, as two `odiseo api` processes behind a load balancer."""
    settings = make_settings(rate_limit_per_minute=LIMIT)
    first = await start_client(settings)
    second = await start_client(settings)
    wait_for_fresh_minute()
    for client in (first, second, first):
        response = await client.get("/queue/status", headers=auth(ALL_KEY))
        assert response.status_code == 200, response.text
    assert_limited(await second.get("/queue/status", headers=auth(ALL_KEY)))
    assert_limited(await first.get("/queue/status", headers=auth(ALL_KEY)))
    assert (await second.get("/queue/status", headers=auth(READ_KEY))).status_code == 200
