"""Driver errors that mean "the database is gone", turned into StoreUnavailable at the edge."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from odiseo.errors import StoreUnavailable

_UNAVAILABLE_DRIVER_ERRORS = frozenset(
    {
        "ConnectionDoesNotExistError",
        "ConnectionFailureError",
        "CannotConnectNowError",
        "PostgresConnectionError",
        "AdminShutdownError",
        "InterfaceError",
    }
)


def is_unavailable(exc: BaseException) -> bool:
    """Whether a driver error means the database cannot be reached (not a bug of ours)."""
    if isinstance(exc, OSError | TimeoutError | ConnectionError | OperationalError):
        return True
    if isinstance(exc, InterfaceError):
        return True
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated:
            return True
        return type(exc.orig).__name__ in _UNAVAILABLE_DRIVER_ERRORS
    return type(exc).__name__ in _UNAVAILABLE_DRIVER_ERRORS


@contextlib.contextmanager
def translate_errors() -> Iterator[None]:
    """Turn 'the database is gone' driver errors into StoreUnavailable at the edge."""
    try:
        yield
    except Exception as exc:
        if is_unavailable(exc):
            raise StoreUnavailable(f"database unavailable: {type(exc).__name__}") from exc
        raise
