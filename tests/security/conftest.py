"""The security folder's apps: the harness of tests/support/app.py, with scoped API keys.

Every app here knows the four keys of tests.support.app (and only those), reads at most
100 KB per request, and `client` answers a server error as a 500 instead of raising it,
so tests can check what such an answer holds.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from tests.support.app import API_KEYS, READ_KEY, auth

EMAIL = {"to": ["user@example.com"], "subject": "Hello", "body": "<p>Hi</p>"}


@pytest.fixture
def settings_defaults() -> dict[str, Any]:
    return {"api_keys": SecretStr(API_KEYS), "max_request_bytes": 100_000}


@pytest.fixture
def raise_app_exceptions() -> bool:
    return False


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


async def queue_counts(client: httpx.AsyncClient) -> dict[str, int]:
    response = await client.get("/queue/status", headers=auth(READ_KEY))
    assert response.status_code == 200, response.text
    counts = response.json()
    return {k: v for k, v in counts.items() if k not in {"timestamp", "oldest_pending_seconds"}}
