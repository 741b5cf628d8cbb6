"""Pick the engine for DATABASE_URL. Only the API and the CLI call this."""

from __future__ import annotations

from pathlib import Path

from odiseo.errors import ConfigError
from odiseo.storage.contract import Store

DEFAULT_SQLITE_PATH = Path("data/odiseo.db")


def open_store(database_url: str | None, *, schema: str) -> Store:
    """The store for DATABASE_URL: SQLite when unset or sqlite:///path, else PostgreSQL.

    Only the engine asked for is imported (its driver, its SQLAlchemy dialect)."""
    if database_url is None or database_url.startswith("sqlite"):
        from odiseo.storage.sqlite import SqliteStore

        if database_url is None:
            return SqliteStore(DEFAULT_SQLITE_PATH)
        _, _, path = database_url.partition(":///")
        if not path:
            raise ConfigError("DATABASE_URL: SQLite URLs look like sqlite:///path/to/file.db")
        return SqliteStore(Path(path))
    from odiseo.storage.postgres import PostgresStore

    return PostgresStore(database_url, schema=schema)
