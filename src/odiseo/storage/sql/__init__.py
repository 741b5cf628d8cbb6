"""Named SQL, loaded once at import (procrastinate's sql/queries.sql pattern)."""

from __future__ import annotations

import re
from importlib.resources import files

_NAME = re.compile(r"^-- name: (\w+)\n", re.M)


def load(filename: str, **values: str) -> dict[str, str]:
    """The queries of `filename` by name, with their {placeholders} filled from `values`.

    A query is the text after its `-- name:` line up to the next one; comment lines
    are kept (PostgreSQL ignores them), blank lines at the ends are not.
    """
    text = (files(__package__) / filename).read_text(encoding="utf-8")
    parts = _NAME.split(text)[1:]
    return {
        name: body.strip().format(**values)
        for name, body in zip(parts[::2], parts[1::2], strict=True)
    }
