"""The HTTP API (FastAPI).

`create_app` is imported on first use: `odiseo worker` imports `odiseo.api.wiring`,
and importing this package must not bring FastAPI and the dashboard into it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from odiseo.api.app import create_app

__all__ = ["create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from odiseo.api.app import create_app

        return create_app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
