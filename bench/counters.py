"""What the status counters cost the hot verbs: the triggers of migration 0011 on, and off.

    .venv/bin/python bench/counters.py [--rounds 6] [--block 1000]

Two fresh schemas, migrated alike; in one the counting triggers are dropped. In
alternating blocks (so other load on the machine hits both alike), each schema gets
BLOCK single-message enqueues (what POST /emails does), then its rows are claimed 50
at a time and recorded sent (the worker's loop without SMTP). Reported: microseconds
per enqueue and per claimed + recorded message in each, and their ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import time
from dataclasses import dataclass

import asyncpg
from common import (
    DATABASE_URL,
    Report,
    bench_schema,
    exit_cleanly_on_sigterm,
    migrated_store,
    new_email,
)

from odiseo.domain.models import AttemptResult, Outcome
from odiseo.storage.postgres import PostgresStore

WORKER = "bench-counters:1"


@dataclass
class Case:
    name: str
    enqueue_seconds: float = 0.0
    enqueued: int = 0
    deliver_seconds: float = 0.0
    delivered: int = 0


async def drop_triggers(schema: str) -> None:
    conn = await asyncpg.connect(DATABASE_URL, server_settings={"search_path": schema})
    try:
        for event in ("insert", "update", "delete"):
            await conn.execute(f"DROP TRIGGER emails_count_{event} ON emails")
    finally:
        await conn.close()


async def block(store: PostgresStore, case: Case, size: int) -> None:
    began = time.perf_counter()
    for _ in range(size):
        await store.enqueue([new_email()], now=dt.datetime.now(dt.UTC))
    case.enqueue_seconds += time.perf_counter() - began
    case.enqueued += size
    began = time.perf_counter()
    while batch := await store.claim_due(
        limit=50, worker=WORKER, lease_seconds=300, now=dt.datetime.now(dt.UTC)
    ):
        done = dt.datetime.now(dt.UTC)
        results = [
            AttemptResult(
                email_id=m.id, message_id=m.message_id, attempt=m.attempts,
                outcome=Outcome.SENT, started_at=done, finished_at=done, smtp_code=250,
                response="250 ok",
            )
            for m in batch
        ]  # fmt: skip
        await store.record_results(results, worker=WORKER, now=done)
        case.delivered += len(batch)
    case.deliver_seconds += time.perf_counter() - began


async def main(args: argparse.Namespace) -> None:
    report = Report("counters")
    report.header(
        "Status counters: the cost of the counting triggers",
        {"rounds": args.rounds, "enqueues per block": args.block},
    )
    on, off = Case("triggers on"), Case("triggers off")
    async with contextlib.AsyncExitStack() as stack:
        stores = []
        for case in (on, off):
            schema = await stack.enter_async_context(bench_schema())
            stores.append(await stack.enter_async_context(migrated_store(schema)))
            if case is off:
                await drop_triggers(schema)
        for _ in range(args.rounds):
            for store, case in zip(stores, (on, off), strict=True):
                await block(store, case, args.block)
    rows = [
        [
            case.name,
            f"{case.enqueue_seconds / case.enqueued * 1e6:.0f}",
            f"{case.deliver_seconds / case.delivered * 1e6:.0f}",
        ]
        for case in (on, off)
    ]
    rows.append(
        [
            "on / off",
            f"{on.enqueue_seconds / off.enqueue_seconds:.2f}",
            f"{on.deliver_seconds / off.deliver_seconds:.2f}",
        ]
    )
    report.table(["case", "µs per enqueue", "µs per claimed + recorded message"], rows)
    report.save()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=6, help="alternations (6)")
    parser.add_argument("--block", type=int, default=1000, help="enqueues per block (1000)")
    return parser.parse_args(argv)


if __name__ == "__main__":
    exit_cleanly_on_sigterm()
    asyncio.run(main(parse_args()))
