"""The dashboard's apps: the harness of tests/support/app.py with the four scoped keys,
and `sign_in` to open a session the way a browser does (form, cookie, CSRF token)."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from tests.support.app import API_KEYS

CSRF = re.compile(r'name="csrf" value="([^"]+)"')


@pytest.fixture
def settings_defaults() -> dict[str, Any]:
    return {"api_keys": SecretStr(API_KEYS), "allowed_senders": "billing@odiseo.io"}


def csrf_of(page: str) -> str:
    found = CSRF.search(page)
    assert found is not None, page
    return found.group(1)


async def sign_in(client: httpx.AsyncClient, key: str) -> str:
    """Sign `client` in with `key` (its cookie jar keeps the session); the CSRF token."""
    form = await client.get("/ui/sign-in")
    assert form.status_code == 200, form.text
    answer = await client.post(
        "/ui/sign-in", data={"csrf": csrf_of(form.text), "key": key, "next": "/ui/"}
    )
    assert answer.status_code == 303, answer.text
    page = await client.get("/ui/")
    assert page.status_code == 200, page.text
    return csrf_of(page.text)
