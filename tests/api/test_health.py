"""/health: the store on every probe, the provider at most every 30 s, 503 when the db is gone."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import httpx

from odiseo.api.app import create_app
from odiseo.api.health import HealthCheck
from odiseo.api.wiring import build_service
from odiseo.config import Settings
from odiseo.errors import TransientFailure
from odiseo.providers.base import Receipt
from odiseo.service import EmailService
from odiseo.storage.contract import Store
from tests.support.smtp import free_port


class CountingProvider:
    """A provider that only counts health checks and fails them on request."""

    name = "counting"

    def __init__(self) -> None:
        self.checks = 0
        self.healthy = True

    async def deliver(
        self, data: bytes, *, sender: str, recipients: Sequence[str], message_id: str
    ) -> Receipt:
        raise TransientFailure("not for delivery")

    async def check(self) -> None:
        self.checks += 1
        if not self.healthy:
            raise TransientFailure("down")

    async def close(self) -> None:
        return None


def service_of(store: Store, tmp_path: Path) -> EmailService:
    """The service the app builds over `store` (its renderer starts no process unless used)."""
    return build_service(Settings(log_to_file=False, templates_dir=tmp_path), store)


async def test_provider_is_checked_once_for_many_probes(store: Store, tmp_path: Path) -> None:
    provider = CountingProvider()
    health = HealthCheck(service=service_of(store, tmp_path), provider=provider)
    for _ in range(25):
        assert await health.db() == "ok"
        assert await health.email_provider() == "ok"
    assert provider.checks == 1
    await health.close()


async def test_failing_provider_is_reported_not_fatal(store: Store, tmp_path: Path) -> None:
    provider = CountingProvider()
    provider.healthy = False
    health = HealthCheck(service=service_of(store, tmp_path), provider=provider)
    assert await health.email_provider() == "unreachable"
    await health.close()


async def test_unreachable_postgres_gives_503_naming_db(tmp_path: Path) -> None:
    settings = Settings(
        database_url=f"postgresql://postgres@127.0.0.1:{free_port()}/test",
        email_provider="outbox",
        outbox_dir=tmp_path,
        log_to_file=False,
        api_allowed_hosts="odiseo",  # the client's base_url
    )
    app = create_app(settings, migrate=False)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://odiseo") as client:
            health = await client.get("/health")
            assert health.status_code == 503
            assert health.json()["db"] == "unreachable"
            assert "db" in health.json()["detail"]
            posted = await client.post(
                "/emails", json={"to": ["a@example.com"], "subject": "s", "body": "b"}
            )
            assert posted.status_code == 503
            assert "database" in posted.json()["detail"]
            status = await client.get("/queue/status")
            assert status.status_code == 503
