"""The SMTP listeners in-process, on both stores.

`submission`: the app (lifespan) with its submission listener on the test's database,
delivering by SMTP to the recording server; clients are real (smtplib, run in a thread
so the listener keeps the test's loop). `bounce_listener`: the listener `odiseo run` and
`odiseo smtp` start for returned mail (smtp/bounces.py's spec on smtp/listener.py's
server), on a loopback port in the test's loop."""

from __future__ import annotations

import asyncio
import smtplib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any, TypeVar

import pytest

from odiseo.bounce_service import BounceService
from odiseo.config import load_settings
from odiseo.domain.verp import ReturnPaths
from odiseo.smtp import close_listeners, start_listeners
from odiseo.smtp.bounces import bounce_spec
from odiseo.storage.contract import Store
from tests.support.app import (
    API_KEYS,
    READ_KEY,
    Harness,
    SettingsFactory,
    auth,
    running_app,
)
from tests.support.smtp import SmtpServer, free_port
from tests.support.tls import TlsMaterial

T = TypeVar("T")

BOUNCE_DOMAIN = "bounce.odiseo.test"
SECRET = "a bounce secret of 32 characters"
PATHS = ReturnPaths(domain=BOUNCE_DOMAIN, secret=SECRET.encode())
MAX_BYTES = 1024 * 1024


@dataclass
class Submission(Harness):
    """The harness plus where the submission listener listens, and the TLS to reach it."""

    port: int = 0
    tls: TlsMaterial | None = None

    def connect(self, *, starttls: bool = True) -> smtplib.SMTP:
        """A client connected (and EHLO'd), after STARTTLS when `starttls`."""
        client = smtplib.SMTP("127.0.0.1", self.port, timeout=15)
        client.ehlo("client.example")
        if starttls:
            assert self.tls is not None
            client.starttls(context=self.tls.client_context())
            client.ehlo("client.example")
        return client

    async def read(self, message_id: str) -> dict[str, Any]:
        response = await self.client.get(f"/emails/{message_id}", headers=auth(READ_KEY))
        assert response.status_code == 200, response.text
        return dict(response.json())


async def in_thread(call: Callable[[], T]) -> T:
    """Run a blocking client call off the loop the listener serves on."""
    return await asyncio.to_thread(call)


def message(**headers: str) -> EmailMessage:
    """A small text message with these header fields (From, To, Subject by default)."""
    made = EmailMessage()
    fields = {"From": "app@odiseo.io", "To": "to@example.com", "Subject": "Hello", **headers}
    for name, value in fields.items():
        made[name.replace("_", "-")] = value
    made.set_content("Hello from an application.\n")
    return made


@pytest.fixture
def submission_overrides() -> dict[str, Any]:
    """Extra Settings fields of the `submission` app; parametrise to change them."""
    return {}


@pytest.fixture
async def submission(
    make_settings: SettingsFactory,
    submission_overrides: dict[str, Any],
    smtp_server: SmtpServer,
    tls: TlsMaterial,
) -> AsyncIterator[Submission]:
    port = free_port()
    settings = make_settings(
        api_keys=API_KEYS,
        allowed_senders="app@odiseo.io,@acme.example",
        email_provider="smtp",
        smtp_host="127.0.0.1",
        smtp_port=smtp_server.port,
        smtp_use_tls=False,
        smtp_timeout_seconds=5.0,
        smtp_submission_port=port,
        smtp_submission_tls_cert=tls.server_pem,
        smtp_submission_tls_key=tls.server_pem,
        **submission_overrides,
    )
    async with running_app(settings, with_smtp=True) as (app, http):
        http.headers.update(auth(READ_KEY))
        yield Submission(
            app=app, client=http, settings=settings, smtp=smtp_server, port=port, tls=tls
        )


@dataclass
class BounceListener:
    port: int
    service: BounceService


@pytest.fixture
async def bounce_listener(store: Store) -> AsyncIterator[BounceListener]:
    settings = load_settings(
        _env_file=None,
        bounce_domain=BOUNCE_DOMAIN,
        bounce_secret=SECRET,
        bounce_listen_port=free_port(),
        bounce_max_message_bytes=MAX_BYTES,
    )
    service = BounceService(store, return_paths=PATHS)
    spec = bounce_spec(settings, service=service, hostname="bounces.odiseo.test")
    assert spec is not None
    listeners = await start_listeners([spec])
    try:
        yield BounceListener(port=listeners[0].port, service=service)
    finally:
        await close_listeners(listeners)
