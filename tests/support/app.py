"""The app harness: the real app (lifespan running) on the test's database, reached over httpx.

Every in-process app test builds its app here, whatever its folder:

- `make_settings(**overrides)`: Settings on this test's database (`database_url`, so both
  engines), the outbox provider, the template files of TEMPLATES, then the folder's
  `settings_defaults` (tests/security/conftest.py gives every app there its API keys), then
  `overrides`. Hermetic: no ./.env from the working directory.
- `settings`: `make_settings(**settings_overrides)`; parametrise `settings_overrides` to
  change fields for one test.
- `start_client(settings)`: start an app and a client on it; everything started is stopped
  after the test. `client` is one started on `settings`.
- `features`: a `Harness` whose app delivers by SMTP to the recording aiosmtpd server
  (`smtp_server`), and a worker over the app's store (`deliver()`), so a test goes
  POST → deliver() → parse what the server received.

Two things keep app tests fast without changing what is exercised:

- A SQLite database is seeded with a copy of one migrated by the real migrations once per
  session (only when the test has not made the file itself); the app's lifespan still runs
  `migrate()` on it (a no-op at head). The migrations from scratch run in tests/store/.
- TLS is off towards the test SMTP server, yet every SmtpProvider builds a default SSL
  context, which loads the system CA bundle (several per test). `features` points
  SSL_CERT_FILE/SSL_CERT_DIR at nothing for the test's duration.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import shutil
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any, Protocol

import httpx
import pytest
from fastapi import FastAPI

from odiseo.api.app import create_app
from odiseo.api.wiring import build_worker
from odiseo.config import Settings
from odiseo.storage.sqlite import SqliteStore
from tests.support.smtp import Received, SmtpServer

BASE_URL = "http://odiseo"  # the Host the apps allow (api_allowed_hosts): the check stays on
FROM_DEFAULT = "noreply@odiseo.io"

SEND_KEY = "sendkey-0123456789abcdef"
READ_KEY = "readkey-0123456789abcdef"
ADMIN_KEY = "adminkey-0123456789abcd"
ALL_KEY = "allkey-0123456789abcdefgh"
API_KEYS = f"{SEND_KEY}:send,{READ_KEY}:read,{ADMIN_KEY}:admin,{ALL_KEY}"
SECRETS = (SEND_KEY, READ_KEY, ADMIN_KEY, ALL_KEY)

# The file templates every app's TEMPLATES_DIR holds (id -> (html, subject)).
TEMPLATES = {
    "order": ("<p>Order {{ number }} for {{ name }}</p>", "Your order {{ number }}"),
    "shadowed": ("<p>FILE version for {{ name }}</p>", "From the file"),
}


def stored_templates(listed: list[dict[str, Any]]) -> list[str]:
    """The ids of the stored templates in a GET /templates answer (files are listed too)."""
    return [t["id"] for t in listed if t["source"] == "stored"]


def write_templates(directory: Path) -> Path:
    """`directory` (made if needed) holding the file templates of TEMPLATES."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, (html, subject) in TEMPLATES.items():
        (directory / f"{name}.html").write_text(html)
        (directory / f"{name}.subject.txt").write_text(subject)
    return directory


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


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


class SettingsFactory(Protocol):
    def __call__(self, **overrides: Any) -> Settings: ...


class ClientFactory(Protocol):
    def __call__(
        self, settings: Settings, *, raise_app_exceptions: bool = ..., with_worker: bool = ...
    ) -> Awaitable[httpx.AsyncClient]: ...


@dataclass
class Harness:
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
def settings_defaults() -> dict[str, Any]:
    """Settings fields of every app in a folder; a folder's conftest.py may override this."""
    return {"allowed_senders": "billing@odiseo.io,@acme.example"}


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    """Extra Settings fields; parametrise this fixture to change them for one test."""
    return {}


@pytest.fixture
def raise_app_exceptions() -> bool:
    """Whether `client` raises an app's exception (True) or answers it as a 500."""
    return True


@pytest.fixture(scope="session")
def migrated_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file brought to the newest schema by the real migrations, to copy from."""
    path = tmp_path_factory.mktemp("migrated") / "migrated.db"

    async def migrate() -> None:
        store = SqliteStore(path)
        try:
            await store.migrate()
        finally:
            await store.close()

    asyncio.run(migrate())
    return path


@pytest.fixture
def make_settings(
    database_url: tuple[str, str],
    tmp_path: Path,
    settings_defaults: dict[str, Any],
    migrated_sqlite: Path,
) -> SettingsFactory:
    """Settings on this test's database: see the module docstring for what they hold."""
    url, schema = database_url
    templates = write_templates(tmp_path / "templates")

    def make(**overrides: Any) -> Settings:
        if url.startswith("sqlite:///"):
            target = Path(url.removeprefix("sqlite:///"))
            if not target.exists():
                shutil.copyfile(migrated_sqlite, target)
        values: dict[str, Any] = {
            "database_url": url,
            "schema_name": schema,
            "email_provider": "outbox",
            "outbox_dir": tmp_path / "outbox",
            "templates_dir": templates,
            "log_to_file": False,
            "api_allowed_hosts": "odiseo",
            **settings_defaults,
            **overrides,
        }
        return Settings(_env_file=None, **values)  # type: ignore[call-arg]

    return make


@pytest.fixture
def settings(make_settings: SettingsFactory, settings_overrides: dict[str, Any]) -> Settings:
    return make_settings(**settings_overrides)


@contextlib.asynccontextmanager
async def running_app(
    settings: Settings,
    *,
    raise_app_exceptions: bool = True,
    with_worker: bool = False,
    with_smtp: bool = False,
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """The app built from `settings` with its lifespan entered (its SMTP listeners too,
    `with_smtp`), and a client on it."""
    app = create_app(settings, with_worker=with_worker, with_smtp=with_smtp)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=raise_app_exceptions)
        async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as http:
            yield app, http


@pytest.fixture
async def start_client() -> AsyncIterator[ClientFactory]:
    """Start apps (lifespan entered) and clients on them; all stopped after the test."""
    async with contextlib.AsyncExitStack() as stack:

        async def start(
            settings: Settings, *, raise_app_exceptions: bool = True, with_worker: bool = False
        ) -> httpx.AsyncClient:
            started = running_app(
                settings, raise_app_exceptions=raise_app_exceptions, with_worker=with_worker
            )
            _app, http = await stack.enter_async_context(started)
            return http

        yield start


@pytest.fixture
async def client(
    settings: Settings, start_client: ClientFactory, raise_app_exceptions: bool
) -> httpx.AsyncClient:
    """A client on an app built from `settings`."""
    return await start_client(settings, raise_app_exceptions=raise_app_exceptions)


@pytest.fixture
async def features(
    make_settings: SettingsFactory,
    settings_overrides: dict[str, Any],
    smtp_server: SmtpServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[Harness]:
    """The app delivering by SMTP to `smtp_server`; see the module docstring."""
    missing = str(tmp_path / "no-ca-bundle")
    monkeypatch.setenv("SSL_CERT_FILE", missing)
    monkeypatch.setenv("SSL_CERT_DIR", missing)
    smtp = {
        "email_provider": "smtp",
        "smtp_host": "127.0.0.1",
        "smtp_port": smtp_server.port,
        "smtp_use_tls": False,
        "smtp_timeout_seconds": 5.0,
    }
    settings = make_settings(**{**smtp, **settings_overrides})
    async with running_app(settings) as (app, http):
        yield Harness(app=app, client=http, settings=settings, smtp=smtp_server)
