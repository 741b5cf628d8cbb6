"""The API key is checked before a byte of a request body is read, on every route.

The routes are found by walking the app itself, so a route added later is covered
without being listed here; FastAPI body parameters (read before any dependency)
cannot be declared at all.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi import Body, FastAPI
from fastapi.routing import APIRoute, iter_route_contexts

from odiseo.api.app import create_app
from odiseo.api.auth import Scope
from tests.support.app import ADMIN_KEY, ALL_KEY, READ_KEY, SEND_KEY, SettingsFactory, auth

KEYS_BY_SCOPE = {Scope.SEND: SEND_KEY, Scope.READ: READ_KEY, Scope.ADMIN: ADMIN_KEY}
MALFORMED = b'{not json, "to": ['
# Every operation reading a body today: the walk below must find at least these.
BODY_ROUTES = {
    ("POST", "/emails"),
    ("POST", "/emails/batch"),
    ("PATCH", "/emails/{message_id}"),
    ("PUT", "/templates/{template_id}"),
    ("POST", "/templates/{template_id}/render"),
}


@dataclass(frozen=True)
class Operation:
    method: str
    path: str  # the template, e.g. /emails/{message_id}
    scope: Scope | None  # None: open to everyone
    takes_body: bool

    @property
    def url(self) -> str:
        return re.sub(r"\{[^}]+\}", "x1", self.path)


def route_scope(route: Any) -> Scope | None:
    dependant = getattr(route, "dependant", None)
    for dependency in dependant.dependencies if dependant else ():
        scope = getattr(dependency.call, "odiseo_scope", None)
        if scope is not None:
            return Scope(scope)
    return None


def operations(app: FastAPI) -> list[Operation]:
    """Every method of every route the app serves, with the scope it asks for.

    A route outside FastAPI (the fast POST /emails) asks for what the documented
    operation of the same method and path declares; the OpenAPI document says which
    operations take a body.
    """
    document = app.openapi()
    contexts = list(iter_route_contexts(app.routes))
    declared = {
        (method, context.path): route_scope(context)
        for context in contexts
        if isinstance(context.original_route, APIRoute)
        for method in context.methods or ()
    }
    found = []
    for context in contexts:
        if str(context.path).startswith("/ui/"):  # the dashboard: a session, not a key
            continue  # (tests/ui/test_sessions.py: the session before the body there)
        for method in sorted((context.methods or set()) - {"HEAD"}):
            path = str(context.path)
            operation = document["paths"].get(path, {}).get(method.lower())
            if operation is None:  # /docs, /redoc, /openapi.json
                assert method == "GET", f"{method} {path} is served but not documented"
            scope = declared.get((method, path))
            takes_body = operation is not None and "requestBody" in operation
            found.append(Operation(method, path, scope, takes_body))
    return found


@pytest.fixture
async def counted(
    make_settings: SettingsFactory,
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient, list[int]]]:
    """The app, a client on it, and how many times each request called receive()."""
    app = create_app(make_settings())
    reads: list[int] = []

    async def counting(scope: Any, receive: Any, send: Any) -> None:
        reads.append(0)

        async def counted_receive() -> Any:
            reads[-1] += 1
            return await receive()

        await app(scope, counted_receive, send)

    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=counting, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://odiseo") as client:
            yield app, client, reads


async def test_every_route_checks_the_key_before_reading_the_body(
    counted: tuple[FastAPI, httpx.AsyncClient, list[int]],
) -> None:
    app, client, reads = counted
    walked = operations(app)
    assert {(o.method, o.path) for o in walked if o.takes_body} >= BODY_ROUTES, walked
    wrong = []
    for operation in walked:
        if operation.scope is None:
            if operation.takes_body:
                wrong.append(f"{operation}: takes a body without asking for a key")
            continue
        others = [key for scope, key in KEYS_BY_SCOPE.items() if scope != operation.scope]
        for headers, expected in [
            ({"Content-Type": "application/json"}, 401),
            ({"Content-Type": "text/plain"}, 401),
            ({}, 401),
            ({"Content-Type": "application/json", **auth("wrongkey-0123456789abcdef")}, 401),
            *[({"Content-Type": "application/json", **auth(key)}, 403) for key in others],
        ]:
            response = await client.request(
                operation.method, operation.url, content=MALFORMED, headers=headers
            )
            if response.status_code != expected or not response.json().get("detail"):
                got = f"{response.status_code} {response.text:.200}"
                wrong.append(f"{operation.method} {operation.path} {headers}: {got}")
            elif reads[-1] != 0:
                wrong.append(f"{operation.method} {operation.path} {headers}: body read first")
    assert not wrong, "\n".join(wrong)


async def test_with_the_right_key_the_same_body_is_read_and_refused_as_malformed(
    counted: tuple[FastAPI, httpx.AsyncClient, list[int]],
) -> None:
    """The control: the walk above would see 422s here if keys were not checked first."""
    app, client, reads = counted
    for operation in operations(app):
        if not operation.takes_body:
            continue
        headers = {"Content-Type": "application/json", **auth(ALL_KEY)}
        response = await client.request(
            operation.method, operation.url, content=MALFORMED, headers=headers
        )
        assert response.status_code == 422, f"{operation}: {response.text}"
        assert reads[-1] > 0


def test_a_route_declaring_a_body_parameter_cannot_be_built(
    make_settings: SettingsFactory,
) -> None:
    """FastAPI would read such a body before any dependency: the app refuses to exist."""
    from odiseo.api import app as app_module
    from odiseo.api.routes import templates

    async def endpoint(payload: dict[str, Any] = Body()) -> None:  # noqa: B008
        return None

    templates.router.add_api_route("/{template_id}/body-first", endpoint, methods=["POST"])
    try:
        with pytest.raises(RuntimeError, match="before the API key is checked"):
            app_module.create_app(make_settings())
    finally:
        templates.router.routes.pop()
    app_module.create_app(make_settings())  # and without it, builds again
