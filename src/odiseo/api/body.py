"""JSON request bodies, read only after the API key was checked, parsed by pydantic-core.

Every route reads its body with `parse_json`, never through a FastAPI body
parameter: FastAPI reads and parses a declared body before it runs any
dependency, the key check included, so a client without a key could make the
API hold a 16 MB body and answer it with a validation report instead of a 401.
`refuse_declared_bodies` keeps any route from declaring one. Parsing the raw
bytes in one call also spares FastAPI's json.loads-then-validate on the
hottest endpoint, and raises the same RequestValidationError (422).

Only a JSON media type is read (415 otherwise, a missing one included): a web
page can send a cross-site POST without a CORS preflight only as text/plain,
a form type, or with no type at all, so none of those may reach a route.
api/openapi.py puts the models back into the OpenAPI document.
"""

from __future__ import annotations

import re
from typing import TypeVar

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.routing import iter_route_contexts
from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)
# JSON the parser gives up on for its own limits, not for bad syntax: a 400 like FastAPI's.
_UNPARSABLE = re.compile(r"recursion limit|out of range|unicode", re.IGNORECASE)


async def parse_json(request: Request, model: type[M]) -> M:
    """The request body as `model`.

    Raises:
        HTTPException: 415, no JSON media type (checked before a byte is read); 400, the
            body cannot be read as JSON text at all (not UTF-8, nested or sized beyond
            what the parser takes), as FastAPI answers.
        RequestValidationError: 422, malformed JSON, or not a `model`.
    """
    media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if not _is_json(media_type):
        raise HTTPException(415, _wrong_media_type(media_type))
    try:
        text = (await request.body()).decode()
    except UnicodeDecodeError:
        raise HTTPException(400, "body: not UTF-8 text") from None
    try:
        return model.model_validate_json(text)
    except ValidationError as exc:
        errors = exc.errors()
        for error in errors:
            if error["type"] == "json_invalid" and _UNPARSABLE.search(str(error["msg"])):
                raise HTTPException(400, f"body: {error['msg']}") from None
        raise RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in errors]) from None


def _wrong_media_type(media_type: str) -> str:
    sent = f"Content-Type {media_type[:80]!r}" if media_type else "no Content-Type"
    return f"body: send it as Content-Type: application/json ({sent} was sent)"


def _is_json(media_type: str) -> bool:
    return media_type == "application/json" or (
        media_type.startswith("application/") and media_type.endswith("+json")
    )


def refuse_declared_bodies(app: FastAPI) -> None:
    """Stop the app from being built with a route that declares a body parameter,
    which FastAPI would read before checking the API key (see the module docstring)."""
    for route in iter_route_contexts(app.routes):
        if getattr(route, "body_field", None) is not None:
            raise RuntimeError(
                f"{sorted(route.methods or ())} {route.path}: declares a body parameter, "
                "which FastAPI reads before the API key is checked; read it with parse_json"
            )
