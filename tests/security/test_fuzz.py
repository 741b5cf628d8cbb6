"""Schemathesis against the app's own OpenAPI document: no 500s, answers as documented.

In-process over ASGI on a SQLite store, every operation, authenticated with an all-scopes
key; bounded: 25 examples per operation, no deadline, deterministic. Schemathesis can only
go past a bound the document declares, so the classes it cannot reach are fuzzed apart:
every integer parameter with integers of any size (each must declare bounds the store's
columns can hold), and pagination cursors encoding any integer, on both stores.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import SecretStr
from schemathesis.checks import not_a_server_error
from schemathesis.core import NotSet
from schemathesis.python import asgi as schemathesis_asgi
from schemathesis.specs.openapi.checks import response_schema_conformance

from odiseo.api.app import create_app
from odiseo.config import Settings
from tests.support.app import ALL_KEY, API_KEYS, auth, write_templates

MAX_EXAMPLES = 25


def fuzz_settings(root: Path | None = None) -> Settings:
    values: dict[str, Any] = {
        "api_keys": SecretStr(API_KEYS),
        "log_to_file": False,
        "email_provider": "outbox",
        "max_request_bytes": 1_000_000,
        "api_allowed_hosts": "testserver",  # the Host schemathesis sends in-process
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
    write_templates(root / "templates")
    app = create_app(fuzz_settings(root))
    try:
        yield app
    finally:
        schemathesis_asgi.shutdown_lifespans()


@schemathesis.check
def reaches_the_operation(ctx: Any, response: Any, case: Any) -> bool | None:
    """The harness itself must not be refused (the Host it sends, a JSON body's media
    type): every case would then pass without testing anything."""
    media_type = response.request.headers.get("content-type", "").partition(";")[0].strip()
    sent_json = not isinstance(case.body, NotSet) and media_type == "application/json"
    if response.status_code == 421 or (response.status_code == 415 and sent_json):
        raise AssertionError(f"refused before the operation: {response.status_code}")
    return None


@schema.parametrize()
def test_the_api_keeps_its_own_contract(case: Any, fuzz_app: FastAPI) -> None:
    case.call_and_validate(
        app=fuzz_app,
        headers=auth(ALL_KEY),
        checks=[not_a_server_error, response_schema_conformance, reaches_the_operation],
    )


# Integers of any size ------------------------------------------------------------------------

INT64 = (-(2**63), 2**63 - 1)  # PostgreSQL BIGINT; SQLite's INTEGER holds the same
FUZZ = settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    database=None,
    # one app for all examples; too_slow as in the profile (tests/conftest.py)
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
EDGES = [2**31 - 1, 2**31, 2**53 + 1, 2**63 - 1, 2**63, 2**64, -(2**63) - 1, 10**30, -(10**30)]
ANY_INTEGER = st.one_of(st.sampled_from(EDGES), st.integers())


def integer_parameters() -> list[tuple[str, str, str, str, dict[str, Any]]]:
    """(method, path, name, where, schema) of every integer parameter in the document."""
    found = []
    for path, operations in schema.raw_schema["paths"].items():
        for method, operation in operations.items():
            for parameter in operation.get("parameters", []):
                for option in parameter["schema"].get("anyOf", [parameter["schema"]]):
                    if option.get("type") == "integer":
                        where = parameter["in"]
                        found.append((method.upper(), path, parameter["name"], where, option))
    return found


INTEGERS = integer_parameters()


def test_every_integer_parameter_is_bounded_by_what_the_store_holds() -> None:
    assert {(m, p, n) for m, p, n, _, _ in INTEGERS} >= {
        ("GET", "/emails", "limit"),
        ("GET", "/templates/{template_id}", "version"),
    }
    for method, path, name, _, bounds in INTEGERS:
        low, high = bounds.get("minimum"), bounds.get("maximum")
        assert low is not None and high is not None, f"{method} {path} {name}: unbounded"
        assert INT64[0] <= low <= high <= INT64[1], f"{method} {path} {name}: {bounds}"
    version = next(b for _, _, n, _, b in INTEGERS if n == "version")
    assert version["maximum"] <= 2**31 - 1, "templates.version is a 32-bit INTEGER column"


def request_with(path: str, name: str, where: str, value: int) -> tuple[str, dict[str, Any]]:
    """The URL with `value` in parameter `name`, other path parameters filled in."""
    if where == "path":
        path = path.replace("{" + name + "}", str(value))
    url = re.sub(r"\{[^}]+\}", "welcome", path)
    return url, ({name: str(value)} if where == "query" else {})


@pytest.mark.parametrize(
    ("method", "path", "name", "where", "bounds"),
    [pytest.param(*p, id=f"{p[0]} {p[1]} {p[2]}") for p in INTEGERS],
)
@FUZZ
@given(value=ANY_INTEGER)
async def test_an_integer_parameter_of_any_size_gets_an_answer_not_a_500(
    client: httpx.AsyncClient,
    method: str,
    path: str,
    name: str,
    where: str,
    bounds: dict[str, Any],
    value: int,
) -> None:
    url, params = request_with(path, name, where, value)
    response = await client.request(method, url, params=params, headers=auth(ALL_KEY))
    if bounds["minimum"] <= value <= bounds["maximum"]:
        assert response.status_code < 500, (value, response.text)
    else:
        assert response.status_code == 422, (value, response.text)
        assert name in response.json()["detail"], response.text


# Cursors --------------------------------------------------------------------------------------


def as_cursor(text: str) -> str:
    """How GET /emails writes a cursor: unpadded URL-safe base64 of the id's digits."""
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


CURSORS = st.one_of(
    st.builds(str, st.one_of(st.sampled_from(EDGES), st.integers())).map(as_cursor),
    st.text(max_size=20).map(as_cursor),
    st.text(
        alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_=", max_size=32
    ),
)


@FUZZ
@given(cursor=CURSORS)
async def test_a_cursor_holding_anything_gets_an_answer_not_a_500(
    client: httpx.AsyncClient, cursor: str
) -> None:
    """Ours hold an id of the 64-bit column; anything else is a 422 naming the cursor."""
    response = await client.get("/emails", params={"cursor": cursor}, headers=auth(ALL_KEY))
    try:
        digits = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
    except ValueError:
        digits = ""
    ours = re.fullmatch(r"[1-9][0-9]*", digits) is not None and int(digits) <= INT64[1]
    if len(cursor) > 32 or not ours:
        assert response.status_code == 422, (cursor, response.text)
        assert "cursor" in response.json()["detail"], response.text
    else:
        assert response.status_code == 200, (cursor, response.text)
