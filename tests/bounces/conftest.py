"""The bounce listener's tests: the listener `odiseo run` and `odiseo smtp` start
(smtp/bounces.py's spec on smtp/listener.py's server), on a loopback port in the test's
loop, on both stores."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from odiseo.bounce_service import BounceService
from odiseo.config import load_settings
from odiseo.domain.verp import ReturnPaths
from odiseo.smtp import close_listeners, start_listeners
from odiseo.smtp.bounces import bounce_spec
from odiseo.storage.contract import Store
from tests.support.smtp import free_port
from tests.webhooks.conftest import receiver  # noqa: F401 - a fixture for these tests

BOUNCE_DOMAIN = "bounce.odiseo.test"
SECRET = "a bounce secret of 32 characters"
PATHS = ReturnPaths(domain=BOUNCE_DOMAIN, secret=SECRET.encode())
MAX_BYTES = 1024 * 1024


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
