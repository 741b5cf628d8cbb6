"""The bounce listener's tests: a listener on a loopback port in the test's loop, serving
the real handler (odiseo/smtp/bounces.py) over aiosmtpd, on both stores."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from aiosmtpd.smtp import SMTP

from odiseo.bounce_service import BounceService
from odiseo.domain.verp import ReturnPaths
from odiseo.smtp.bounces import BounceHandler
from odiseo.storage.contract import Store
from tests.support.smtp import free_port
from tests.webhooks.conftest import receiver  # noqa: F401 - a fixture for these tests

BOUNCE_DOMAIN = "bounce.odiseo.test"
PATHS = ReturnPaths(domain=BOUNCE_DOMAIN, secret=b"a bounce secret of 32 characters")


@dataclass
class BounceListener:
    port: int
    service: BounceService


@pytest.fixture
async def bounce_listener(store: Store) -> AsyncIterator[BounceListener]:
    service = BounceService(store, return_paths=PATHS)
    port = free_port()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(BounceHandler(service), hostname="bounces.odiseo.test", ident="Odiseo"),
        host="127.0.0.1",
        port=port,
    )
    try:
        yield BounceListener(port=port, service=service)
    finally:
        server.close()
        await server.wait_closed()
