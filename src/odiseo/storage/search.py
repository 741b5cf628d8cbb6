"""SQL expressions for searching JSON array columns, alike on both engines."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import Text, cast


def json_text(column: Any) -> Any:
    return cast(column, Text)


def domain_pattern(domain: str) -> str:
    """A LIKE pattern matching a JSON array (as text, lower-cased) holding an address at
    `domain`: `…@domain"…`, with LIKE's own characters escaped."""
    escaped = domain.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f'%@{escaped}"%'


def json_element(value: str) -> str:
    """A LIKE pattern matching `value` as one element of a JSON array: written as the
    JSON serialiser wrote it (quotes, escapes and \\u sequences included), then literal."""
    encoded = json.dumps(value)
    escaped = encoded.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"
