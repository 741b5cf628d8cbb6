"""Driver errors that mean "the database is gone" or "the database refuses us", turned
into StoreUnavailable / StoreRefused at the edge, each with its cause in words."""

from __future__ import annotations

import contextlib
import errno
import socket
from collections.abc import Iterator

from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from odiseo.errors import StoreRefused, StoreUnavailable

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
# SQLSTATEs of a database that answers but will not let us in or do our work: class 28
# (role, password), 3D000 (no such database), 42501 (no privilege), 3F000 (no such
# schema), 42P01 (no such table: a schema not migrated, or not ours to see).
_REFUSED_STATES = ("28", "3D000", "42501", "3F000", "42P01")
# SQLSTATEs of a server that cannot serve us now: class 08 (connection exception) and
# 57P0x (shutting down, crashed, starting up or in recovery: "cannot connect now").
_UNAVAILABLE_STATES = ("08", "57P")


def is_unavailable(exc: BaseException) -> bool:
    """Whether a driver error means the database cannot be reached (not a bug of ours)."""
    if is_refused(exc):
        return True
    if isinstance(exc, OSError | TimeoutError | ConnectionError | OperationalError):
        return True
    if isinstance(exc, InterfaceError):
        return True
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    state = _sqlstate(exc)
    if state is not None and state.startswith(_UNAVAILABLE_STATES):
        return True
    # SQLAlchemy's asyncpg dialect wraps the driver's error in one of its own (.orig),
    # the driver's own being that one's cause: follow .orig and explicit causes only.
    link: BaseException | None = exc
    for _ in range(8):  # a chain is two or three long; never follow a loop for ever
        if link is None:
            break
        if type(link).__name__ in _UNAVAILABLE_DRIVER_ERRORS:
            return True
        link = getattr(link, "orig", None) or link.__cause__
    return False


def is_refused(exc: BaseException) -> bool:
    """Whether the database answered with a refusal (role, password, database, privilege)."""
    state = _sqlstate(exc)
    return state is not None and state.startswith(_REFUSED_STATES)


def store_error(exc: BaseException) -> StoreUnavailable:
    """The StoreUnavailable (or StoreRefused) a driver error stands for, its cause in words."""
    if is_refused(exc):
        return StoreRefused(_server_message(exc))
    return StoreUnavailable(cause_of(exc))


def cause_of(exc: BaseException) -> str:
    """What went wrong, in words an operator acts on ("connection refused", "unknown host")."""
    for link in _chain(exc):
        if isinstance(link, socket.gaierror):
            return f"unknown host name ({link.strerror or link})"
        if isinstance(link, ConnectionRefusedError):
            return "connection refused (nothing listens on that host and port)"
        if isinstance(link, TimeoutError):
            return "no answer in time"
        if isinstance(link, OSError) and link.errno is not None:
            said = link.strerror or errno.errorcode.get(link.errno, str(link))
            return f"{said}: {link.filename}" if link.filename else said
    root = list(_chain(exc))[-1]
    text = str(root).strip().splitlines()[0] if str(root).strip() else ""
    return f"{text} ({type(root).__name__})" if text else type(root).__name__


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """The exception, what it wraps (SQLAlchemy's .orig) and what caused it, in order."""
    seen: set[int] = set()
    pending: list[BaseException | None] = [exc]
    while pending:
        link = pending.pop(0)
        if link is None or id(link) in seen:
            continue
        seen.add(id(link))
        yield link
        pending += [getattr(link, "orig", None), link.__cause__, link.__context__]


def _sqlstate(exc: BaseException) -> str | None:
    for link in _chain(exc):
        state = getattr(link, "sqlstate", None) or getattr(link, "pgcode", None)
        if isinstance(state, str):
            return state
    return None


def _server_message(exc: BaseException) -> str:
    """PostgreSQL's own sentence (`role "x" does not exist`), without SQLAlchemy's wrapping."""
    for link in _chain(exc):
        if isinstance(getattr(link, "sqlstate", None), str):
            return str(link).strip().splitlines()[0]
    return cause_of(exc)


@contextlib.contextmanager
def translate_errors() -> Iterator[None]:
    """Turn 'the database is gone' or 'refuses us' driver errors into StoreUnavailable."""
    try:
        yield
    except StoreUnavailable:
        raise
    except Exception as exc:
        if is_unavailable(exc):
            raise store_error(exc) from exc
        raise
