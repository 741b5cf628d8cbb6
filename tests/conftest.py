"""Shared fixtures: the store on both engines, and a real SMTP server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import settings
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from odiseo.storage.contract import Store
from odiseo.storage.postgres import PostgresStore
from odiseo.storage.sqlite import SqliteStore
from tests.support.postgres import TEST_DATABASE_URL, drop_schema, new_schema_name, require_postgres
from tests.support.processes import Launcher
from tests.support.smtp import SmtpServer

# Property tests: 150 examples each; `--hypothesis-profile=thorough` for a long search.
settings.register_profile("default", max_examples=150)
settings.register_profile("thorough", max_examples=5000)
settings.load_profile("default")

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


def sqlalchemy_engine(url: str, schema: str) -> AsyncEngine:
    """A SQLAlchemy engine on the test database, for what only SQLAlchemy does (Alembic)."""
    if url.startswith("sqlite"):
        return create_async_engine(url.replace("sqlite://", "sqlite+aiosqlite://", 1))
    return create_async_engine(
        url.replace("postgresql://", "postgresql+asyncpg://", 1),
        poolclass=NullPool,
        connect_args={"server_settings": {"search_path": schema}},
    )


def open_test_store(url: str, schema: str) -> Store:
    if url.startswith("sqlite"):
        return SqliteStore(Path(url.removeprefix("sqlite:///")))
    return PostgresStore(url, schema=schema)


@pytest.fixture
async def store(database_url: tuple[str, str]) -> AsyncIterator[Store]:
    opened = open_test_store(*database_url)
    await opened.migrate()
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture
async def more_stores(
    database_url: tuple[str, str], store: Store
) -> AsyncIterator[Callable[[], Store]]:
    """Open further stores on the same database, as other processes would."""
    opened: list[Store] = []

    def another() -> Store:
        opened.append(open_test_store(*database_url))
        return opened[-1]

    try:
        yield another
    finally:
        for extra in opened:
            await extra.close()


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    with SmtpServer() as server:
        yield server


@pytest.fixture
def launcher(tmp_path: Path) -> Iterator[Launcher]:
    started = Launcher(tmp_path)
    try:
        yield started
    finally:
        started.stop_all()


@pytest.fixture
def database(engine: str, tmp_path: Path) -> Iterator[dict[str, str]]:
    """DATABASE_URL (and SCHEMA_NAME) of a fresh database on `engine`, as environment entries."""
    if engine == "sqlite":
        yield {"DATABASE_URL": f"sqlite:///{tmp_path / 'odiseo.db'}"}
        return
    asyncio.run(require_postgres())
    schema = new_schema_name()
    try:
        yield {"DATABASE_URL": TEST_DATABASE_URL, "SCHEMA_NAME": schema}
    finally:
        asyncio.run(drop_schema(schema))


@pytest.fixture
def sqlite_database(tmp_path: Path) -> dict[str, str]:
    return {"DATABASE_URL": f"sqlite:///{tmp_path / 'odiseo.db'}"}
