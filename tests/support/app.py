"""Feature harness: the real app over httpx, a worker over the same store, a real SMTP server.

Every test here goes POST → deliver() → parse what the aiosmtpd server received,
on SQLite and on PostgreSQL (the `database_url` fixture of tests/conftest.py).
Tests change settings by parametrising `settings_overrides`.

Two things keep the folder fast without changing what is exercised:

- A SQLite database is seeded with a copy of one migrated by the real migrations once
  per session; the app's lifespan still runs `migrate()` on it (a no-op at head).
- TLS is off towards the test SMTP server, yet every SmtpProvider builds a default SSL
  context, which loads the system CA bundle (~0.1 s each, several per test). The
  `features` fixture points SSL_CERT_FILE/SSL_CERT_DIR at nothing for the test's duration.
"""

from __future__ import annotations

import asyncio
import base64
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from odiseo.api.app import create_app
from odiseo.api.wiring import build_worker
from odiseo.config import Settings
from odiseo.storage.sqlite import SqliteStore
from tests.support.smtp import Received, SmtpServer

FROM_DEFAULT = "noreply@odiseo.io"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@dataclass
class Features:
    """The running app, its HTTP client, and the SMTP server it delivers to."""

    app: FastAPI
    client: httpx.AsyncClient
    settings: Settings
    smtp: SmtpServer

    async def deliver(self) -> int:
        """Run one worker over the app's store until nothing is due; the deliveries made."""
        worker = build_worker(self.settings, self.app.state.service.store)
        try:
            return await worker.run_until_idle()
        finally:
            await worker.provider.close()

    @property
    def received(self) -> list[Received]:
        return self.smtp.received

    def messages(self) -> list[EmailMessage]:
        return [r.message for r in self.smtp.received]

    async def send(self, payload: dict[str, Any], expect: int = 202) -> str:
        """POST /emails and return the message_id (asserting the status code)."""
        response = await self.client.post("/emails", json=payload)
        assert response.status_code == expect, response.text
        return str(response.json()["message_id"])

    async def email(self, message_id: str) -> dict[str, Any]:
        response = await self.client.get(f"/emails/{message_id}")
        assert response.status_code == 200, response.text
        return dict(response.json())

    async def counts(self) -> dict[str, int]:
        response = await self.client.get("/queue/status")
        assert response.status_code == 200, response.text
        body = response.json()
        return {k: body[k] for k in ("pending", "scheduled", "processing", "sent", "failed")}

    async def nothing_stored(self) -> None:
        assert set((await self.counts()).values()) == {0}
        listed = await self.client.get("/emails")
        assert listed.status_code == 200 and listed.json()["items"] == []


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    """Extra Settings fields; parametrise this fixture to change them for one test."""
    return {}


@pytest.fixture(scope="session")
def migrated_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file brought to the newest schema by the real migrations, to copy from."""
    path = tmp_path_factory.mktemp("features-template") / "migrated.db"

    async def migrate() -> None:
        store = SqliteStore(path)
        try:
            await store.migrate()
        finally:
            await store.close()

    asyncio.run(migrate())
    return path


@pytest.fixture
def features_settings(
    database_url: tuple[str, str],
    smtp_server: SmtpServer,
    tmp_path: Path,
    settings_overrides: dict[str, Any],
    migrated_sqlite: Path,
) -> Settings:
    url, schema = database_url
    if url.startswith("sqlite:///"):
        target = Path(url.removeprefix("sqlite:///"))
        assert not target.exists()
        shutil.copyfile(migrated_sqlite, target)
    templates = tmp_path / "templates"
    templates.mkdir()
    (templates / "order.html").write_text("<p>Order {{ number }} for {{ name }}</p>")
    (templates / "order.subject.txt").write_text("Your order {{ number }}")
    (templates / "shadowed.html").write_text("<p>FILE version for {{ name }}</p>")
    (templates / "shadowed.subject.txt").write_text("From the file")
    fields: dict[str, Any] = {
        "database_url": url,
        "schema_name": schema,
        "email_provider": "smtp",
        "smtp_host": "127.0.0.1",
        "smtp_port": smtp_server.port,
        "smtp_use_tls": False,
        "smtp_timeout_seconds": 5.0,
        "log_to_file": False,
        "allowed_senders": "billing@odiseo.io,@acme.example",
        "templates_dir": templates,
        "api_allowed_hosts": "odiseo",  # the client's base_url; the Host check stays on
        **settings_overrides,
    }
    return Settings(_env_file=None, **fields)  # hermetic: no ./.env from the working directory


@pytest.fixture
async def features(
    features_settings: Settings, smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Features]:
    missing = str(features_settings.templates_dir.parent / "no-ca-bundle")
    monkeypatch.setenv("SSL_CERT_FILE", missing)
    monkeypatch.setenv("SSL_CERT_DIR", missing)
    app = create_app(features_settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://odiseo") as http:
            yield Features(app=app, client=http, settings=features_settings, smtp=smtp_server)


def email(**fields: Any) -> dict[str, Any]:
    """A valid POST /emails body, with `fields` replacing or adding to it."""
    return {"to": ["to@example.com"], "subject": "Hello", "body": "<p>Hi</p>", **fields}


def raw_header(data: bytes, name: str) -> str:
    """One header exactly as it was on the wire (unfolded); it must be 7-bit."""
    head = data.split(b"\r\n\r\n", 1)[0].decode("ascii")
    lines = head.replace("\r\n ", " ").replace("\r\n\t", " ").split("\r\n")
    prefix = f"{name.lower()}:"
    found = [line.split(":", 1)[1].strip() for line in lines if line.lower().startswith(prefix)]
    assert len(found) == 1, (name, found)
    return found[0]
