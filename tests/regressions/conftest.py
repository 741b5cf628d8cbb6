"""Regression tests of the fast paths (bugs a review found): fixtures."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from odiseo.storage.postgres import PostgresStore
from tests.features.conftest import (  # noqa: F401  (fixtures, re-exported for this folder)
    features,
    features_settings,
    migrated_sqlite,
    settings_overrides,
)
from tests.support.postgres import TEST_DATABASE_URL, drop_schema, new_schema_name, require_postgres


@pytest.fixture
async def pg_store() -> AsyncIterator[PostgresStore]:
    await require_postgres()
    schema = new_schema_name()
    store = PostgresStore(TEST_DATABASE_URL, schema=schema)
    await store.migrate()
    try:
        yield store
    finally:
        await store.close()
        await drop_schema(schema)
