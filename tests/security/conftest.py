"""Fixtures of the security tests: the app in-process with scoped API keys, on both stores.

Every client here is a real `create_app(settings)` with its lifespan running, reached
through httpx's ASGI transport; the keys below are the only ones the apps know.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import httpx
import pytest
import trustme
from pydantic import SecretStr

from odiseo.api.app import create_app
from odiseo.config import Settings

SEND_KEY = "sendkey-0123456789abcdef"
READ_KEY = "readkey-0123456789abcdef"
ADMIN_KEY = "adminkey-0123456789abcd"
ALL_KEY = "allkey-0123456789abcdefgh"
API_KEYS = f"{SEND_KEY}:send,{READ_KEY}:read,{ADMIN_KEY}:admin,{ALL_KEY}"
SECRETS = (SEND_KEY, READ_KEY, ADMIN_KEY, ALL_KEY)

EMAIL = {"to": ["user@example.com"], "subject": "Hello", "body": "<p>Hi</p>"}


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def wait_for_fresh_minute(margin: float = 8.0) -> None:
    """Rate limits count per wall-clock minute: do not start a count just before one ends."""
    into = time.time() % 60
    if into > 60 - margin:
        time.sleep(60 - into + 0.05)


async def eventually(
    condition: Callable[[], Awaitable[bool]], *, timeout: float, what: str
) -> None:
    """Await `condition` until it holds, letting the app's own tasks (the worker) run meanwhile."""
    deadline = time.monotonic() + timeout
    while not await condition():
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.05)


class SettingsFactory(Protocol):
    def __call__(self, **overrides: Any) -> Settings: ...


class ClientFactory(Protocol):
    def __call__(
        self, settings: Settings, *, raise_app_exceptions: bool = ..., with_worker: bool = ...
    ) -> Awaitable[httpx.AsyncClient]: ...


@pytest.fixture
def make_settings(database_url: tuple[str, str], tmp_path: Path) -> SettingsFactory:
    """Settings on this test's database, with the four keys and a 100 KB request limit."""
    url, schema = database_url
    templates = tmp_path / "templates"
    templates.mkdir(exist_ok=True)

    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "database_url": url,
            "schema_name": schema,
            "email_provider": "outbox",
            "outbox_dir": tmp_path / "outbox",
            "templates_dir": templates,
            "log_to_file": False,
            "api_keys": SecretStr(API_KEYS),
            "max_request_bytes": 100_000,
            "api_allowed_hosts": "odiseo",  # the clients' base_url; the Host check stays on
        }
        values.update(overrides)
        return Settings(_env_file=None, **values)  # type: ignore[call-arg]

    return make


@pytest.fixture
async def start_client() -> AsyncIterator[ClientFactory]:
    """Start apps (lifespan entered) and clients on them; all stopped after the test."""
    async with contextlib.AsyncExitStack() as stack:

        async def start(
            settings: Settings, *, raise_app_exceptions: bool = True, with_worker: bool = False
        ) -> httpx.AsyncClient:
            app = create_app(settings, with_worker=with_worker)
            await stack.enter_async_context(app.router.lifespan_context(app))
            transport = httpx.ASGITransport(app=app, raise_app_exceptions=raise_app_exceptions)
            return await stack.enter_async_context(
                httpx.AsyncClient(transport=transport, base_url="http://odiseo")
            )

        yield start


@pytest.fixture
async def client(make_settings: SettingsFactory, start_client: ClientFactory) -> httpx.AsyncClient:
    """An app with the four keys; a server error comes back as a 500, not an exception."""
    return await start_client(make_settings(), raise_app_exceptions=False)


async def queue_counts(client: httpx.AsyncClient) -> dict[str, int]:
    response = await client.get("/queue/status", headers=auth(READ_KEY))
    assert response.status_code == 200, response.text
    counts = response.json()
    return {k: v for k, v in counts.items() if k not in {"timestamp", "oldest_pending_seconds"}}


@dataclass(frozen=True)
class Tls:
    """A private CA (PEM in `ca_file`) and a server context with a 127.0.0.1 certificate."""

    ca_file: Path
    server_context: ssl.SSLContext


@pytest.fixture(scope="session")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Tls:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(context)
    ca_file = tmp_path_factory.mktemp("tls") / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    return Tls(ca_file=ca_file, server_context=context)
