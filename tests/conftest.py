"""Shared fixtures: the store on both engines, and a real SMTP server."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from odiseo.storage.postgres import PostgresStore
from odiseo.storage.sqlite import SqliteStore
from odiseo.storage.store import EmailStore
from tests.support.postgres import TEST_DATABASE_URL, drop_schema, new_schema_name, require_postgres
from tests.support.smtp import SmtpServer

ENGINES = ["sqlite", "postgres"]


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def database_url(engine: str, tmp_path: Path) -> AsyncIterator[tuple[str, str]]:
    """(DATABASE_URL, SCHEMA_NAME) of a fresh, empty database on `engine`."""
    if engine == "sqlite":
        yield f"sqlite:///{tmp_path / 'odiseo.db'}", "unused"
        return
    await require_postgres()
    schema = new_schema_name()
    try:
        yield TEST_DATABASE_URL, schema
    finally:
        await drop_schema(schema)


@pytest.fixture
async def store(database_url: tuple[str, str]) -> AsyncIterator[EmailStore]:
    url, schema = database_url
    opened: EmailStore = (
        SqliteStore(Path(url.removeprefix("sqlite:///")))
        if url.startswith("sqlite")
        else PostgresStore(url, schema=schema)
    )
    await opened.migrate()
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    with SmtpServer() as server:
        yield server
