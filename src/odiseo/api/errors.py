"""Validation errors as one readable `detail` line plus a list of each problem."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


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
