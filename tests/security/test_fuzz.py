"""Schemathesis against the app's own OpenAPI document: no 500s, answers as documented.

In-process over ASGI on a SQLite store, every operation, authenticated with an all-scopes
key; bounded: 25 examples per operation, no deadline, deterministic.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from pydantic import SecretStr
from schemathesis.checks import not_a_server_error
from schemathesis.python import asgi as schemathesis_asgi
from schemathesis.specs.openapi.checks import response_schema_conformance

from odiseo.api.app import create_app
from odiseo.config import Settings
from tests.security.conftest import ALL_KEY, API_KEYS, auth

MAX_EXAMPLES = 25


def fuzz_settings(root: Path | None = None) -> Settings:
    values: dict[str, Any] = {
        "api_keys": SecretStr(API_KEYS),
        "log_to_file": False,
        "email_provider": "outbox",
        "max_request_bytes": 1_000_000,
    }
    if root is not None:
        values.update(
            database_url=f"sqlite:///{root / 'odiseo.db'}",
            outbox_dir=root / "outbox",
            templates_dir=root / "templates",
        )
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


# The document only: building the app opens nothing (the store is opened by its lifespan).
schema = schemathesis.openapi.from_dict(create_app(fuzz_settings()).openapi())
schema.config.generation.update(max_examples=MAX_EXAMPLES, deterministic=True, database="none")


@pytest.fixture(scope="module")
def fuzz_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FastAPI]:
    """The app the cases are sent to: its own SQLite file; schemathesis runs its lifespan."""
    root = tmp_path_factory.mktemp("fuzz")
    (root / "templates").mkdir()
    (root / "templates" / "order.html").write_text("<p>Order {{ number }}</p>")
    app = create_app(fuzz_settings(root))
    try:
        yield app
    finally:
        schemathesis_asgi.shutdown_lifespans()


@schema.parametrize()
def test_the_api_keeps_its_own_contract(case: Any, fuzz_app: FastAPI) -> None:
    case.call_and_validate(
        app=fuzz_app,
        headers=auth(ALL_KEY),
        checks=[not_a_server_error, response_schema_conformance],
    )
