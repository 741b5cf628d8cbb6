"""One way to run SQLAlchemy Core statements on either engine, over its one pool.

The rarely called verbs (`shared.py`) are written once in SQLAlchemy Core and run
through a `Tx`: on SQLite by SQLAlchemy's own engine (aiosqlite), on PostgreSQL
compiled to SQL text once per call and run on the asyncpg pool that the hot verbs
use too, so a process holds one pool per database. Rows come back as mappings from
column name to value, times aware and in UTC, JSON decoded, on both.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any, Protocol, TypeVar

import asyncpg
from sqlalchemy.dialects.postgresql.asyncpg import PGDialect_asyncpg
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.sql import Executable

from odiseo.storage.failures import translate_errors

Row = Mapping[Any, Any]


Values = Mapping[str, Any]


class Tx(Protocol):
    """Statements inside one transaction (or, for `Database.read`, one connection).

    `values` fill a statement's named `bindparam`s: a statement built once with them
    (see `fixed`) is compiled once per process, not once per call.
    """

    async def rows(self, statement: Executable, values: Values | None = None) -> list[Row]: ...

    async def first(self, statement: Executable, values: Values | None = None) -> Row | None: ...

    async def scalar(self, statement: Executable, values: Values | None = None) -> Any: ...

    async def run(self, statement: Executable, params: Sequence[dict[str, Any]] = ()) -> int:
        """Execute, once or once per `params` item; the rows it changed."""


class Database(Protocol):
    def read(self) -> contextlib.AbstractAsyncContextManager[Tx]: ...

    def write(self) -> contextlib.AbstractAsyncContextManager[Tx]:
        """A write transaction (on SQLite it takes the write lock at BEGIN)."""


# -- SQLite: SQLAlchemy's engine -------------------------------------------------------


class _SqliteTx:
    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    async def rows(self, statement: Executable, values: Values | None = None) -> list[Row]:
        return [row._mapping for row in await self.conn.execute(statement, values)]

    async def first(self, statement: Executable, values: Values | None = None) -> Row | None:
        row = (await self.conn.execute(statement, values)).first()
        return None if row is None else row._mapping

    async def scalar(self, statement: Executable, values: Values | None = None) -> Any:
        return (await self.conn.execute(statement, values)).scalar()

    async def run(self, statement: Executable, params: Sequence[dict[str, Any]] = ()) -> int:
        result = await self.conn.execute(statement, list(params) or None)
        return int(result.rowcount)


class SqliteDatabase:
    """Statements on SQLAlchemy's aiosqlite engine; `write()` begins IMMEDIATE."""

    def __init__(self, engine: AsyncEngine, writer: AsyncEngine) -> None:
        self.engine = engine
        self.writer = writer

    @contextlib.asynccontextmanager
    async def read(self) -> AsyncIterator[_SqliteTx]:
        with translate_errors():
            async with self.engine.connect() as conn:
                yield _SqliteTx(conn)

    @contextlib.asynccontextmanager
    async def write(self) -> AsyncIterator[_SqliteTx]:
        with translate_errors():
            async with self.writer.begin() as conn:
                yield _SqliteTx(conn)


# -- PostgreSQL: compiled for asyncpg ----------------------------------------------------

_DIALECT = PGDialect_asyncpg(paramstyle="numeric_dollar")  # type: ignore[no-untyped-call]
_FIXED: dict[int, Executable] = {}  # by id(); holding them keeps their ids theirs
_COMPILED: dict[tuple[int, tuple[str, ...]], Any] = {}

S = TypeVar("S", bound=Executable)


def fixed(statement: S) -> S:
    """Mark a statement built once, at import, whose varying values all come as named
    `bindparam`s (lists as `expanding=True` ones): on PostgreSQL it is compiled once per
    process instead of once per call. Returns it."""
    _FIXED[id(statement)] = statement
    return statement


def compiled(statement: Executable, params: Sequence[Values] = ()) -> tuple[str, list[list[Any]]]:
    """`statement` as asyncpg SQL ($1, $2…) and its arguments, one list per `params` item
    (or the statement's own values). Values pass as they are: asyncpg takes aware
    times, and the pool's codec encodes JSON, as SQLAlchemy's types would."""
    keys = list(params[0]) if params else None
    if _FIXED.get(id(statement)) is statement:
        return _from_fixed(statement, keys, params)
    done = statement.compile(  # type: ignore[attr-defined]
        dialect=_DIALECT, column_keys=keys, compile_kwargs={"render_postcompile": True}
    )
    names = done.positiontup or []
    given = params or [{}]
    arguments = [[item.get(name, done.params.get(name)) for name in names] for item in given]
    return str(done), arguments


def _from_fixed(
    statement: Executable, keys: list[str] | None, params: Sequence[Values]
) -> tuple[str, list[list[Any]]]:
    """`compiled` for a `fixed` statement: its compilation kept; expanding parameters
    (lists) rendered into it per call, as SQLAlchemy's own execution does."""
    key = (id(statement), tuple(keys or ()))
    done = _COMPILED.get(key)
    if done is None:
        done = _COMPILED[key] = statement.compile(  # type: ignore[attr-defined]
            dialect=_DIALECT, column_keys=keys
        )
    given = params or [{}]
    if not done.post_compile_params:
        names = done.positiontup or []
        return str(done), [[item.get(n, done.params.get(n)) for n in names] for item in given]
    assert len(given) == 1, "lists in a statement run once per parameter set"
    state = done._process_parameters_for_postcompile({**done.params, **given[0]})
    return state.statement, [[state.parameters[n] for n in state.positiontup]]


class _PostgresTx:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def rows(self, statement: Executable, values: Values | None = None) -> list[Row]:
        sql, (arguments,) = compiled(statement, [values] if values else ())
        return list(await self.conn.fetch(sql, *arguments))

    async def first(self, statement: Executable, values: Values | None = None) -> Row | None:
        sql, (arguments,) = compiled(statement, [values] if values else ())
        row: Row | None = await self.conn.fetchrow(sql, *arguments)
        return row

    async def scalar(self, statement: Executable, values: Values | None = None) -> Any:
        sql, (arguments,) = compiled(statement, [values] if values else ())
        return await self.conn.fetchval(sql, *arguments)

    async def run(self, statement: Executable, params: Sequence[dict[str, Any]] = ()) -> int:
        sql, arguments = compiled(statement, params)
        if len(arguments) > 1:
            await self.conn.executemany(sql, arguments)
            return len(arguments)
        return command_count(await self.conn.execute(sql, *arguments[0]))


def command_count(status: str) -> int:
    """The row count of a command tag such as 'UPDATE 3'."""
    return int(status.rpartition(" ")[2] or 0)


class PostgresDatabase:
    """Statements on the store's asyncpg pool (see postgres.PostgresStore.connection)."""

    def __init__(self, connection: Any) -> None:
        self.connection = connection  # () -> async context manager of a pooled connection

    @contextlib.asynccontextmanager
    async def read(self) -> AsyncIterator[_PostgresTx]:
        async with self.connection() as conn:
            yield _PostgresTx(conn)

    @contextlib.asynccontextmanager
    async def write(self) -> AsyncIterator[_PostgresTx]:
        async with self.connection() as conn, conn.transaction():
            yield _PostgresTx(conn)
