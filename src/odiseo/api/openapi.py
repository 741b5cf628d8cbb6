"""The OpenAPI document: FastAPI's, plus the two things our routes declare by hand.

Routes read their bodies with `parse_json` after the key check (see api/body.py),
so FastAPI sees no body models: `request_body` names each route's model and
`document_openapi` adds the models to the components. The key check reads the
Authorization header itself (see api/auth.py), so FastAPI sees no security
dependency: `document_openapi` declares the bearer scheme on the operations whose
routes ask for a scope. This is the one place `app.openapi` is replaced, as
FastAPI's documentation describes for extending the document.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute, APIRouter
from pydantic import BaseModel

from odiseo.api.auth import SCOPE_MARK

_COMPONENTS = "#/components/schemas/{model}"
SCHEME = "HTTPBearer"  # the OpenAPI security scheme the key-checking routes declare


def request_body(model: type[BaseModel]) -> dict[str, Any]:
    """`openapi_extra` for a route that reads its body with parse_json."""
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": _COMPONENTS.format(model=model.__name__)}}
            },
        }
    }


def document_openapi(
    app: FastAPI, *, models: Iterable[type[BaseModel]], routers: Iterable[APIRouter]
) -> None:
    """Add `models` (and the models they use) to the components, and the bearer scheme to
    the operations of `routers` (included without a prefix) that check a key."""
    generate = app.openapi
    models = tuple(models)
    secured = _secured_operations(routers)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        document = generate()
        _add_models(document, models)
        _add_security(document, secured)
        app.openapi_schema = document
        return document

    app.openapi = openapi  # type: ignore[method-assign]


def _secured_operations(routers: Iterable[APIRouter]) -> set[tuple[str, str]]:
    """(path, method) of every route with a key-checking dependency."""
    return {
        (route.path_format, method.lower())
        for router in routers
        for route in router.routes
        if isinstance(route, APIRoute)
        and any(hasattr(d.call, SCOPE_MARK) for d in route.dependant.dependencies)
        for method in route.methods or ()
    }


def _add_models(document: dict[str, Any], models: Iterable[type[BaseModel]]) -> None:
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    for model in models:
        schema = model.model_json_schema(ref_template=_COMPONENTS)
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema


def _add_security(document: dict[str, Any], secured: set[tuple[str, str]]) -> None:
    components = document.setdefault("components", {})
    components.setdefault("securitySchemes", {})[SCHEME] = {
        "type": "http",
        "scheme": "bearer",
        "description": "an API key from API_KEYS",
    }
    for path, method in secured:
        operation = document.get("paths", {}).get(path, {}).get(method)
        if operation is not None:
            operation["security"] = [{SCHEME: []}]
