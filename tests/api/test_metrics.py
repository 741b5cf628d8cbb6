"""GET /metrics (Prometheus text) and the oldest-due figure of /queue/status."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx

from odiseo.domain.models import AttemptResult, Outcome
from odiseo.domain.throttle import Policy, Scope, Signal
from odiseo.storage.contract import Store
from tests.support.factories import new_email

EMAIL = {"to": ["a@example.com"], "subject": "s", "body": "<p>b</p>"}


def sample(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not in metrics")


async def test_metrics_show_queue_depth_by_status(client: httpx.AsyncClient) -> None:
    for _ in range(3):
        assert (await client.post("/emails", json=EMAIL)).status_code == 202
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert sample(text, 'odiseo_queue_messages{status="pending"}') == 3
    assert sample(text, 'odiseo_queue_messages{status="sent"}') == 0
    for family in (
        "odiseo_emails_sent_total",
        "odiseo_delivery_latency_seconds_bucket",
        "odiseo_provider_call_seconds_bucket",
        "odiseo_oldest_due_seconds",
    ):
        assert family in text


async def test_oldest_due_message_age(client: httpx.AsyncClient) -> None:
    store: Store = client._transport.app.state.service.store  # type: ignore[attr-defined]
    now = datetime.now(UTC)
    await store.enqueue([new_email()], now=now - timedelta(seconds=120))
    await store.enqueue([new_email(send_at=now + timedelta(hours=1))], now=now)
    body = (await client.get("/queue/status")).json()
    assert 119 <= body["oldest_pending_seconds"] < 600
    assert await store.oldest_due_seconds(now=now - timedelta(seconds=200)) == 0.0
    # Once claimed and sent, nothing is due any more.
    (claimed,) = await store.claim_due(limit=5, worker="w", lease_seconds=60, now=now)
    done = AttemptResult(email_id=claimed.id, attempt=1, outcome=Outcome.SENT, started_at=now,
                         finished_at=now, smtp_code=250, response="ok")  # fmt: skip
    await store.record_results([done], worker="w", now=now)
    assert (await client.get("/queue/status")).json()["oldest_pending_seconds"] == 0.0


async def test_throttled_scopes_show_while_paused_or_recovering(client: httpx.AsyncClient) -> None:
    store: Store = client._transport.app.state.service.store  # type: ignore[attr-defined]
    now = datetime.now(UTC)
    policy = Policy(pause_seconds=60, max_pause_seconds=900)
    gmail = Signal(scope=Scope.DOMAIN, domain="gmail.com", reply="450 4.7.28 rate limited")
    await store.limits.throttled(gmail, now=now, policy=policy)
    old = Signal(scope=Scope.RELAY, reply="421 4.7.0 Try again later")
    await store.limits.throttled(old, now=now - timedelta(seconds=121), policy=policy)  # over
    text = (await client.get("/metrics")).text
    lines = [line for line in text.splitlines() if line.startswith("odiseo_throttled{")]
    assert lines == ['odiseo_throttled{domain="gmail.com",scope="domain"} 1.0']  # not the relay
