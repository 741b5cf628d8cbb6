"""Fixtures of the end-to-end tests: processes started as users start them."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.postgres import TEST_DATABASE_URL, drop_schema, new_schema_name, require_postgres
from tests.support.processes import Launcher, base_env, smtp_env
from tests.support.smtp import SmtpServer


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


@pytest.fixture
def env(database: dict[str, str], smtp_server: SmtpServer) -> dict[str, str]:
    """The environment of the parametrised tests: `database` and the recording SMTP server."""
    return base_env(**database, **smtp_env(smtp_server))
