"""The fixtures every folder uses, defined once.

- A database: `engine` (sqlite, postgres) -> `database_url` (a fresh one: a SQLite file in
  tmp_path, or a PostgreSQL schema of its own), seen as `store` (migrated) and
  `more_stores`, or as environment entries (`database`) for processes. Pin an engine with
  `@pytest.mark.parametrize("engine", ["postgres"])`; `sqlite_database` is the same on
  SQLite only, for tests of the process rather than the store.
- The app harness (tests/support/app.py): `make_settings`, `settings`, `start_client`,
  `client`, `features`.
- Peers: `smtp_server` (a recording aiosmtpd server), `smtp` (servers and providers of the
  delivery tests), `tls` (a private CA and a 127.0.0.1 certificate), `launcher` (odiseo
  processes), `receiver` (an HTTP receiver of webhook deliveries).

The folders, by component: unit/ (pure functions), store/ (the store contract on both
engines), api/ (what applications and MTAs talk to, in-process: the HTTP routes, and
the SMTP listeners in api/smtp/), delivery/ (the worker, the providers, webhook delivery
in delivery/webhooks/), e2e/ (`odiseo` processes as users run them; the Python client and
Django backend in e2e/client/), faults/ (crashes and outages), security/, ui/ (the
dashboard, in headless Chromium too). Shared helpers live in support/.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import gc
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from odiseo.storage.contract import Store
from odiseo.storage.postgres import PostgresStore
from odiseo.storage.sqlite import SqliteStore
from tests.support.postgres import TEST_DATABASE_URL, drop_schema, new_schema_name, require_postgres
from tests.support.processes import Launcher
from tests.support.receiver import Receiver
from tests.support.smtp import SmtpServer
from tests.support.smtp_harness import SmtpHarness
from tests.support.tls import TlsMaterial, make_tls

pytest_plugins = ["tests.support.app"]

# Property tests: 150 examples each; `--hypothesis-profile=thorough` for a long search.
# No deadline and no too_slow health check: on a loaded machine an example stalled past
# hypothesis's 200 ms deadline, or slow data generation, fails a correct test ("Unreliable
# test timings"); what must be fast is tested where it matters, not per example.
QUIET = {"deadline": None, "suppress_health_check": [HealthCheck.too_slow]}
settings.register_profile("default", max_examples=150, **QUIET)
settings.register_profile("thorough", max_examples=5000, **QUIET)
settings.load_profile("default")

ENGINES = ["sqlite", "postgres"]


def pytest_collection_finish(session: pytest.Session) -> None:
    """What exists once the tests are collected (modules, libraries) lives for the whole
    run: frozen, the garbage collection after each test (below) does not scan it again."""
    gc.collect()
    gc.freeze()


@pytest.fixture(autouse=True)
def collect_garbage() -> Iterator[None]:
    """After each test (this teardown runs after the test's other fixtures'), collect its
    garbage: a socket or transport it left unclosed warns now, and filterwarnings=error
    fails the test that leaked it, not an innocent one that happened to run when the
    collector came by. What survives is frozen too, so each collection scans only what
    one test made."""
    yield
    gc.collect()
    gc.freeze()


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@contextlib.contextmanager
def fresh_database(engine: str, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """(DATABASE_URL, SCHEMA_NAME) of a fresh, empty database on `engine`; dropped after."""
    if engine == "sqlite":
        yield f"sqlite:///{tmp_path / 'odiseo.db'}", "unused"
        return
    run_apart(require_postgres())
    schema = new_schema_name()
    try:
        yield TEST_DATABASE_URL, schema
    finally:
        run_apart(drop_schema(schema))


def run_apart(coroutine: Coroutine[Any, Any, None]) -> None:
    """Run `coroutine` to the end on a loop of its own thread (the test's loop is untouched)."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, coroutine).result()


@pytest.fixture
def database_url(engine: str, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """(DATABASE_URL, SCHEMA_NAME) of a fresh, empty database on `engine`."""
    with fresh_database(engine, tmp_path) as url:
        yield url


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
def database(database_url: tuple[str, str]) -> dict[str, str]:
    """`database_url` as the environment entries of a process (DATABASE_URL, SCHEMA_NAME)."""
    return environment(*database_url)


@pytest.fixture
def sqlite_database(tmp_path: Path) -> Iterator[dict[str, str]]:
    """`database` on SQLite only, for tests of the process rather than of the store."""
    with fresh_database("sqlite", tmp_path) as url:
        yield environment(*url)


def environment(url: str, schema: str) -> dict[str, str]:
    if url.startswith("sqlite"):
        return {"DATABASE_URL": url}
    return {"DATABASE_URL": url, "SCHEMA_NAME": schema}


@pytest.fixture
async def smtp() -> AsyncIterator[SmtpHarness]:
    """Servers and providers of the delivery tests; all stopped (providers first) after."""
    harness = SmtpHarness()
    try:
        yield harness
    finally:
        await harness.close()


@pytest.fixture(scope="session")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsMaterial:
    return make_tls(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A real HTTP receiver of webhook deliveries (tests/support/receiver.py)."""
    started = Receiver().start()
    try:
        yield started
    finally:
        started.stop()
