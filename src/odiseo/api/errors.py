"""Validation errors as one readable `detail` line plus a list of each problem."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from odiseo.errors import MissingVariable, TemplateError, TemplateLimit, UnknownTemplate


def error_list(errors: Sequence[Any]) -> list[dict[str, Any]]:
    """Each problem's location, message and type; never the rejected input itself."""
    return [
        {
            "loc": [str(part) for part in e.get("loc", ())],
            "msg": str(e.get("msg", "")),
            "type": str(e.get("type", "")),
        }
        for e in errors
    ]


def describe_errors(errors: Sequence[Any], *, skip_first: bool = False) -> str:
    """`field.path: message; …` — `skip_first` drops the leading 'body'/'query' part."""
    parts = []
    for e in error_list(errors):
        loc = e["loc"][1:] if skip_first and len(e["loc"]) > 1 else e["loc"]
        parts.append(f"{'.'.join(loc) or 'body'}: {e['msg']}")
    return "; ".join(parts)


def template_problem(error: TemplateError, *, path: str) -> dict[str, Any]:
    """The `errors` entry of a template failure: where in the request it points, and why."""
    on_templates = path.startswith("/templates/")
    loc = ["path", "template_id"] if on_templates else ["body", "template_id"]
    kind = "template_invalid"
    if isinstance(error, MissingVariable):
        field = "template_vars"
        if on_templates:
            field = "variables" if path.endswith("/render") else "sample_variables"
        loc = ["body", field, *([error.variable] if error.variable else [])]
        kind = "template_variable_missing"
    elif isinstance(error, UnknownTemplate):
        kind = "template_unknown"
    elif isinstance(error, TemplateLimit):
        kind = "template_limit"
    return {"loc": loc, "msg": error.message, "type": kind}
