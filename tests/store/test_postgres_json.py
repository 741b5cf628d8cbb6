"""The PostgreSQL pool's json codec: values as json.loads gives them, fresh each time."""

from __future__ import annotations

import json

from odiseo.storage.postgres import PostgresStore
from tests.support.postgres import TEST_DATABASE_URL, drop_schema, new_schema_name, require_postgres

_TEXTS = ("[]", "{}", "[ ]", "{ }", '{"a": [1, {}], "b": "\\u00e9"}', '["x@y.example"]', "null")


async def test_json_columns_read_back_as_json_loads_reads_them() -> None:
    await require_postgres()
    schema = new_schema_name()
    store = PostgresStore(TEST_DATABASE_URL, schema=schema)
    try:
        async with store.connection() as conn:
            query = "SELECT " + ", ".join(f"$${t}$$::json" for t in _TEXTS)
            first = await conn.fetchrow(query)
            assert list(first) == [json.loads(t) for t in _TEXTS]
            first[0].append("changed")  # the empty list and object are new ones each time
            first[1]["changed"] = True
            again = await conn.fetchrow(query)
            assert list(again) == [json.loads(t) for t in _TEXTS]
    finally:
        await store.close()
        await drop_schema(schema)
