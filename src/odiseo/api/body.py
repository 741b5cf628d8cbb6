"""JSON request bodies parsed by pydantic-core straight from bytes.

FastAPI's own body handling (json.loads, then validating the Python objects,
through its dependency machinery) cost more than the validation itself on the
hottest endpoint. `parse_json` validates the raw bytes in one call and raises
the same RequestValidationError, so clients see the same 422. `documented`
puts the model back into the OpenAPI document, which cannot see the body now.
"""

from __future__ import annotations

import re
from typing import Any, TypeVar

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError

_COMPONENTS = "#/components/schemas/{model}"
M = TypeVar("M", bound=BaseModel)
# JSON the parser gives up on for its own limits, not for bad syntax: a 400 like FastAPI's.
_UNPARSABLE = re.compile(r"recursion limit|out of range|unicode", re.IGNORECASE)


async def parse_json(request: Request, model: type[M]) -> M:
    """The request body as `model`.

    Raises:
        HTTPException: 400, the body cannot be read as JSON text at all (not UTF-8,
            nested or sized beyond what the parser takes), as FastAPI answers.
        RequestValidationError: 422, not a JSON media type, malformed JSON, or not a `model`.
    """
    media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if media_type and not _is_json(media_type):
        raise RequestValidationError(
            [{"loc": ("body",), "msg": "Content-Type must be application/json", "type": "type"}]
        )
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


def _is_json(media_type: str) -> bool:
    return media_type == "application/json" or (
        media_type.startswith("application/") and media_type.endswith("+json")
    )


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


def documented(app: FastAPI, *models: type[BaseModel]) -> None:
    """Add `models` (and the models they use) to the app's OpenAPI components."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        document = generate()
        schemas = document.setdefault("components", {}).setdefault("schemas", {})
        for model in models:
            schema = model.model_json_schema(ref_template=_COMPONENTS)
            schemas.update(schema.pop("$defs", {}))
            schemas[model.__name__] = schema
        app.openapi_schema = document
        return document

    app.openapi = openapi  # type: ignore[method-assign]
