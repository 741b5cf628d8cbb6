"""/webhooks through the app, on both stores: management, the secret shown once and never
again (not in GET answers, not in logs), SSRF refusals at save, the log and replays."""

from __future__ import annotations

import logging

import httpx
import pytest

PUBLIC = "https://93.184.216.34/hooks"  # a global address: no DNS needed to check it


async def create(client: httpx.AsyncClient, **fields: object) -> dict[str, object]:
    response = await client.post("/webhooks", json={"url": PUBLIC, **fields})
    assert response.status_code == 201, response.text
    created: dict[str, object] = response.json()
    return created


async def test_an_endpoint_is_managed_and_its_secret_shown_once(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="odiseo")
    created = await create(client, events=["email.sent", "email.sent"], description="orders")
    secret = str(created["secret"])
    assert secret.startswith("whsec_") and str(created["id"]).startswith("wh_")
    assert created["events"] == ["email.sent"] and created["enabled"] is True
    path = f"/webhooks/{created['id']}"
    listed = await client.get("/webhooks")
    one = await client.get(path)
    assert [e["id"] for e in listed.json()] == [created["id"]]
    assert one.json()["url"] == PUBLIC and one.json()["description"] == "orders"
    changed = await client.patch(path, json={"events": [], "description": None})
    assert changed.status_code == 200 and changed.json()["events"] == []
    assert changed.json()["description"] is None
    rotated = await client.post(f"{path}/rotate-secret")
    assert rotated.status_code == 200 and rotated.json()["secret"] != secret
    new_secret = rotated.json()["secret"]
    answers = [listed.text, one.text, changed.text, (await client.get(path)).text]
    for text in [*answers, caplog.text]:
        assert secret not in text and new_secret not in text and "whsec_" not in text
    assert (await client.delete(path)).status_code == 204
    assert (await client.get(path)).status_code == 404
    assert (await client.delete(path)).status_code == 404


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://93.184.216.34/hooks", "must be https"),
        ("ftp://93.184.216.34/hooks", "must be an https URL"),
        ("https://169.254.169.254/latest/meta-data", "169.254.169.254"),
        ("https://100.100.100.200/", "100.100.100.200"),
        ("https://10.1.2.3/", "10.1.2.3"),
        ("https://[::1]/", "::1"),
        ("https://[::ffff:10.0.0.1]/", "not a globally routable"),
        ("https://localhost/hooks", "127.0.0.1"),  # a name resolving to a private address
        ("https://user:pw@93.184.216.34/", "user name or password"),
        ("https:///nohost", "url:"),
    ],
)
async def test_unsafe_urls_are_refused_at_save(
    client: httpx.AsyncClient, url: str, why: str
) -> None:
    response = await client.post("/webhooks", json={"url": url})
    assert response.status_code == 422, response.text
    assert why in response.json()["detail"]
    created = await create(client)
    patched = await client.patch(f"/webhooks/{created['id']}", json={"url": url})
    assert patched.status_code == 422 and why in patched.json()["detail"]


@pytest.mark.parametrize(
    "body",
    [
        {"url": PUBLIC, "events": ["email.nope"]},
        {"url": PUBLIC, "secret": "mine"},
        {"events": []},
        {"url": PUBLIC, "description": "x" * 501},
    ],
)
async def test_bad_bodies_are_422_with_detail(client: httpx.AsyncClient, body: object) -> None:
    response = await client.post("/webhooks", json=body)
    assert response.status_code == 422 and response.json()["detail"], response.text


async def test_a_patch_may_not_null_a_field(client: httpx.AsyncClient) -> None:
    created = await create(client)
    response = await client.patch(f"/webhooks/{created['id']}", json={"url": None})
    assert response.status_code == 422 and "not null" in response.json()["detail"]


async def test_a_test_event_is_logged_and_replays_are_checked(client: httpx.AsyncClient) -> None:
    created = await create(client)
    path = f"/webhooks/{created['id']}"
    test = await client.post(f"{path}/test")
    assert test.status_code == 202, test.text
    assert test.json()["event_type"] == "webhook.test" and test.json()["status"] == "pending"
    page = (await client.get(f"{path}/deliveries")).json()
    assert [d["webhook_id"] for d in page["items"]] == [test.json()["webhook_id"]]
    assert page["next_cursor"] is None
    pending = await client.post(f"{path}/deliveries/{test.json()['id']}/replay")
    assert pending.status_code == 409
    assert (await client.post(f"{path}/deliveries/999/replay")).status_code == 404
    since = await client.post(f"{path}/replay", json={"since": "2020-01-01T00:00:00Z"})
    assert since.status_code == 202 and since.json() == {"replayed": 0}
    assert (await client.get(f"{path}/deliveries?cursor=zz!")).status_code == 422
    assert (await client.get("/webhooks/wh_nope/deliveries")).status_code == 404
    assert (await client.post("/webhooks/wh_nope/test")).status_code == 404


async def test_pages_of_deliveries_follow_the_cursor(client: httpx.AsyncClient) -> None:
    created = await create(client)
    path = f"/webhooks/{created['id']}"
    sent = [(await client.post(f"{path}/test")).json()["id"] for _ in range(5)]
    seen: list[int] = []
    cursor = None
    while True:
        query = f"?limit=2&cursor={cursor}" if cursor else "?limit=2"
        page = (await client.get(f"{path}/deliveries{query}")).json()
        seen += [d["id"] for d in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == sorted(sent, reverse=True)


async def test_metrics_show_the_oldest_pending_delivery(client: httpx.AsyncClient) -> None:
    created = await create(client)
    assert (await client.post(f"/webhooks/{created['id']}/test")).status_code == 202
    text = (await client.get("/metrics")).text
    line = next(
        x for x in text.splitlines() if x.startswith("odiseo_webhook_oldest_pending_seconds ")
    )
    assert float(line.split()[1]) >= 0
    assert "# TYPE odiseo_webhook_deliveries_total counter" in text
