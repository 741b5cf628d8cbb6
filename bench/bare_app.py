"""The baseline of bench/enqueue.py: a bare FastAPI app on odiseo's server stack.

    .venv/bin/python bench/bare_app.py --port 8100 --schema bench_xxx

One uvicorn process (uvloop + httptools when installed, as `odiseo api`), two endpoints:

- POST /parse  parses the JSON body into a small pydantic model and answers 202;
- POST /insert does the same, then one asyncpg INSERT of the body per request
  through a pool of 10 connections (odiseo's pool size), and answers 202.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import uvicorn
from fastapi import FastAPI, status
from pydantic import BaseModel, ConfigDict

DATABASE_URL = os.environ.get("BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
SCHEMA = os.environ.get("BENCH_SCHEMA", "bench_bare")
POOL_SIZE = 10


class EmailBody(BaseModel):
    model_config = ConfigDict(extra="allow")

    to: list[str]
    subject: str
    body: str


class Accepted(BaseModel):
    status: str = "accepted"
    message_id: str


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    pool = await asyncpg.create_pool(
        DATABASE_URL,
        min_size=POOL_SIZE,
        max_size=POOL_SIZE,
        server_settings={"search_path": SCHEMA, "application_name": "bench-bare"},
    )
    async with pool.acquire() as conn:
        await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{SCHEMA}"')
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS bare_emails ("
            " id bigserial PRIMARY KEY, message_id varchar(36) NOT NULL UNIQUE,"
            " payload jsonb NOT NULL, created_at timestamptz NOT NULL DEFAULT now())"
        )
    app.state.pool = pool
    try:
        yield
    finally:
        await pool.close()


app = FastAPI(lifespan=lifespan)


@app.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@app.post("/parse", status_code=status.HTTP_202_ACCEPTED)
async def parse(email: EmailBody) -> Accepted:
    return Accepted(message_id=str(uuid.uuid4()))


@app.post("/insert", status_code=status.HTTP_202_ACCEPTED)
async def insert(email: EmailBody) -> Accepted:
    message_id = str(uuid.uuid4())
    payload: dict[str, Any] = email.model_dump()
    async with app.state.pool.acquire() as conn:
        await conn.execute(
            "INSERT INTO bare_emails (message_id, payload) VALUES ($1, $2::jsonb)",
            message_id,
            json.dumps(payload),
        )
    return Accepted(message_id=message_id)


def main() -> None:
    global SCHEMA
    parser = argparse.ArgumentParser(description="bare FastAPI baseline for bench/enqueue.py")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--schema", default=SCHEMA)
    args = parser.parse_args()
    SCHEMA = args.schema
    # The server settings `odiseo api` uses (odiseo/api/server.py), minus its logging setup.
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=args.port,
        log_config=None,
        log_level="warning",
        access_log=False,
        server_header=False,
    )


if __name__ == "__main__":
    main()
