"""Throwaway PostgreSQL schemas on the test server (TEST_DATABASE_URL)."""

from __future__ import annotations

import os
import uuid

import asyncpg
import pytest

TEST_DATABASE_URL = os.environ.get("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
SKIP_FLAG = "ODISEO_TEST_SKIP_POSTGRES"


def new_schema_name() -> str:
    return f"odiseo_test_{uuid.uuid4().hex[:12]}"


async def require_postgres() -> None:
    """Fail (never skip, unless ODISEO_TEST_SKIP_POSTGRES=1) when PostgreSQL is unreachable."""
    try:
        conn = await asyncpg.connect(TEST_DATABASE_URL, timeout=5)
    except (OSError, asyncpg.PostgresError) as exc:
        if os.environ.get(SKIP_FLAG) == "1":
            pytest.skip(f"PostgreSQL unreachable and {SKIP_FLAG}=1: {exc}")
        pytest.fail(
            f"PostgreSQL at {TEST_DATABASE_URL} is unreachable ({exc}); start it, or set "
            f"{SKIP_FLAG}=1 to skip the PostgreSQL half of the suite",
            pytrace=False,
        )
    await conn.close()


async def drop_schema(schema: str) -> None:
    conn = await asyncpg.connect(TEST_DATABASE_URL, timeout=5)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()
