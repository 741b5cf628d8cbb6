"""Claim throughput with and without a long history: does 1,000,000 sent rows slow the queue?

    .venv/bin/python bench/backlog.py [--history 1000000] [--due 100000] [--rows 20000]

Two fresh schemas (`odiseo migrate`'s tables via store.migrate()):

- empty:   only DUE pending rows (no history);
- history: HISTORY already-sent rows (each with its `sent` event) plus the same DUE rows.

Rows are written with INSERT ... SELECT generate_series (the column list of
src/odiseo/storage/tables.py), then VACUUM ANALYZE, as autovacuum would have done
on a table that grew over time, and a CHECKPOINT (needs a superuser; skipped
otherwise) so the fill's writes are not flushed during the timed part. Then the
worker's loop without SMTP: store.claim_due(limit=50) and store.record_results(SENT)
until ROWS rows are done in each, alternating between the two tables every 1,000
rows so that other load on the machine hits both alike. The baseline is the empty
case of the same run. Also
timed: the queries behind GET /queue/status and /metrics (store.counts(),
store.oldest_due_seconds()).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import time
from dataclasses import dataclass, field
from typing import Any

import asyncpg
from common import (
    DATABASE_URL,
    Report,
    bench_schema,
    exit_cleanly_on_sigterm,
    html_body,
    migrated_store,
    ms,
    percentile,
    rate,
)

from odiseo.domain.models import AttemptResult, Outcome
from odiseo.storage.postgres import PostgresStore

CLAIM = 50
BLOCK = 1_000  # rows claimed in one case before switching to the other
INSERT_CHUNK = 100_000
WORKER = "bench-backlog:1"

# One statement per chunk; $1 html template, $2 first n, $3 last n, $4 status, $5 "now".
INSERT_ROWS = """
INSERT INTO emails (
    message_id, rfc_message_id, client_message_id, payload_hash, status, priority, attempts,
    max_retries, next_attempt_at, locked_until, locked_by, from_email, from_name, to_addrs,
    cc_addrs, bcc_addrs, reply_to, headers, subject, html, text, template_id, template_version,
    expires_at, attachment_count, tags, meta, last_error, created_at, updated_at, sent_at
)
SELECT
    u, '<' || u || '@odiseo.io>', NULL, NULL, $4, 5, CASE WHEN $4 = 'sent' THEN 1 ELSE 0 END,
    3, CASE WHEN $4 = 'sent' THEN NULL ELSE t END, NULL, NULL, 'noreply@odiseo.io', 'Odiseo',
    json_build_array('customer' || n || '@example.com'),
    '[]'::json, '[]'::json, '[]'::json, '[]'::json,
    'Your order #' || (100000 + n) || ' is confirmed',
    replace($1, '100000', (100000 + n)::text), NULL, NULL, NULL,
    NULL, 0, '["order", "confirmation"]'::json, json_build_object('order_id', 100000 + n), NULL,
    t, t, CASE WHEN $4 = 'sent' THEN t + interval '2 seconds' END
FROM (
    SELECT n, gen_random_uuid()::text AS u,
           $5::timestamptz - ($3 - n) * CASE WHEN $4 = 'sent' THEN interval '2.5 seconds'
                                              ELSE interval '30 milliseconds' END AS t
    FROM generate_series($2::bigint, $3::bigint) AS n
) AS s
"""

INSERT_EVENTS = """
INSERT INTO email_events (email_id, at, kind, attempt, smtp_code, response, duration_ms, worker)
SELECT id, sent_at, 'sent', 1, 250, '250 2.0.0 Ok: queued as 4XyZ1', 12, 'mail-1:4242:a1b2c3'
FROM emails WHERE status = 'sent' AND id BETWEEN $1 AND $2
"""

DUE_PLAN = """
EXPLAIN (FORMAT JSON)
SELECT id FROM emails
WHERE status IN ('pending', 'scheduled', 'processing') AND next_attempt_at <= now()
ORDER BY priority, next_attempt_at, id LIMIT 50 FOR UPDATE SKIP LOCKED
"""


@dataclass
class Case:
    name: str
    history: int
    due: int
    fill_seconds: float = 0.0
    table_size: str = ""
    plan: str = ""
    rows: int = 0
    seconds: float = 0.0
    claim_seconds: list[float] = field(default_factory=list)
    record_seconds: list[float] = field(default_factory=list)
    counts_seconds: list[float] = field(default_factory=list)
    oldest_seconds: list[float] = field(default_factory=list)

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0


async def fill(conn: asyncpg.Connection, case: Case, now: dt.datetime) -> None:
    """HISTORY sent rows with their events, then DUE pending rows, then VACUUM ANALYZE."""
    template = html_body(0)
    began = time.perf_counter()
    for status, total in (("sent", case.history), ("pending", case.due)):
        for first in range(1, total + 1, INSERT_CHUNK):
            last = min(total, first + INSERT_CHUNK - 1)
            await conn.execute(INSERT_ROWS, template, first, last, status, now)
    if case.history:
        top = await conn.fetchval("SELECT max(id) FROM emails")
        for first in range(1, top + 1, INSERT_CHUNK):
            await conn.execute(INSERT_EVENTS, first, first + INSERT_CHUNK - 1)
    await conn.execute("VACUUM ANALYZE emails")
    await conn.execute("VACUUM ANALYZE email_events")
    # Write the fill out now, so that its checkpoint does not land inside the timed claims.
    with contextlib.suppress(asyncpg.InsufficientPrivilegeError):
        await conn.execute("CHECKPOINT")
    case.fill_seconds = time.perf_counter() - began
    case.table_size = await conn.fetchval(
        "SELECT pg_size_pretty(pg_total_relation_size('emails'))"
        " || ' + events ' || pg_size_pretty(pg_total_relation_size('email_events'))"
    )
    plan = json.loads(await conn.fetchval(DUE_PLAN))[0]["Plan"]
    case.plan = " > ".join(_plan_nodes(plan))


def _plan_nodes(node: dict[str, Any]) -> list[str]:
    label = node["Node Type"]
    if "Index Name" in node:
        label += f" using {node['Index Name']}"
    children = node.get("Plans", [])
    return [label, *(_plan_nodes(children[0]) if children else [])]


async def prepare(store: PostgresStore, case: Case) -> None:
    """Fill the case's schema, then time the queries behind /queue/status and /metrics."""
    conn = await asyncpg.connect(
        DATABASE_URL, timeout=10, server_settings={"search_path": store.schema}
    )
    try:
        await fill(conn, case, dt.datetime.now(dt.UTC))
    finally:
        await conn.close()
    for _ in range(5):
        began = time.perf_counter()
        await store.counts()
        case.counts_seconds.append(time.perf_counter() - began)
        began = time.perf_counter()
        await store.oldest_due_seconds(now=dt.datetime.now(dt.UTC))
        case.oldest_seconds.append(time.perf_counter() - began)


async def claim_block(store: PostgresStore, case: Case, rows: int) -> None:
    """Claim and record `rows` rows, 50 at a time, as the worker does (minus SMTP)."""
    target = case.rows + rows
    while case.rows < target:
        t0 = time.perf_counter()
        batch = await store.claim_due(
            limit=CLAIM, worker=WORKER, lease_seconds=300, now=dt.datetime.now(dt.UTC)
        )
        t1 = time.perf_counter()
        if not batch:
            raise RuntimeError(f"{case.name}: nothing left to claim after {case.rows} rows")
        done = dt.datetime.now(dt.UTC)
        results = [
            AttemptResult(
                email_id=m.id,
                attempt=m.attempts,
                outcome=Outcome.SENT,
                started_at=done,
                finished_at=done,
                smtp_code=250,
                response="250 2.0.0 Ok: queued",
            )
            for m in batch
        ]
        recorded = await store.record_results(results, worker=WORKER, now=done)
        t2 = time.perf_counter()
        if recorded != len(batch):
            raise RuntimeError(f"recorded {recorded} of {len(batch)} claimed rows")
        case.rows += len(batch)
        case.seconds += t2 - t0
        case.claim_seconds.append(t1 - t0)
        case.record_seconds.append(t2 - t1)


async def run_cases(cases: list[Case], args: argparse.Namespace) -> None:
    """Fill one schema per case, then claim in alternating blocks of BLOCK rows.

    Alternating spreads whatever else the machine is doing evenly over the cases.
    """
    async with contextlib.AsyncExitStack() as stack:
        stores = []
        for case in cases:
            schema = await stack.enter_async_context(bench_schema())
            stores.append(await stack.enter_async_context(migrated_store(schema)))
            await prepare(stores[-1], case)
        deadline = time.perf_counter() + args.timeout
        while cases[0].rows < args.rows and time.perf_counter() < deadline:
            block = min(BLOCK, args.rows - cases[0].rows)
            for store, case in zip(stores, cases, strict=True):
                await claim_block(store, case, block)


async def main(args: argparse.Namespace) -> None:
    report = Report("backlog")
    report.header(
        "Backlog: claim throughput vs history size",
        {
            "history (sent rows, + 1 event each)": f"{args.history:,}",
            "due rows (pending)": f"{args.due:,}",
            "claimed + recorded per case": f"{args.rows:,} ({CLAIM} per claim_due), "
            f"alternating every {BLOCK:,}",
        },
    )
    empty = Case("empty (due rows only)", 0, args.due)
    full = Case(f"{args.history:,} sent + {args.due:,} due", args.history, args.due)
    cases = [empty, full]
    await run_cases(cases, args)
    report_cases(report, empty=empty, full=full)
    report.save()


def report_cases(report: Report, *, empty: Case, full: Case) -> None:
    cases = [empty, full]
    report.table(
        ["table", "rows done", "time", "rows/s", "claim p50", "claim p99",
         "record p50", "record p99"],
        [
            [
                c.name,
                f"{c.rows:,}",
                f"{c.seconds:.1f} s",
                rate(c.rows_per_second),
                ms(percentile(c.claim_seconds, 50)),
                ms(percentile(c.claim_seconds, 99)),
                ms(percentile(c.record_seconds, 50)),
                ms(percentile(c.record_seconds, 99)),
            ]
            for c in cases
        ],
    )  # fmt: skip
    slowdown = 100 * (1 - full.rows_per_second / empty.rows_per_second)
    report.line(f"Slowdown with history: {slowdown:.1f} % (negative = faster).")
    report.line()
    report.table(
        ["table", "store.counts() p50", "store.oldest_due_seconds() p50",
         "fill + VACUUM + CHECKPOINT", "size", "plan of the due scan"],
        [
            [
                c.name,
                ms(percentile(c.counts_seconds, 50)),
                ms(percentile(c.oldest_seconds, 50)),
                f"{c.fill_seconds:.1f} s",
                c.table_size,
                c.plan,
            ]
            for c in cases
        ],
    )  # fmt: skip


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--history", type=int, default=1_000_000, help="sent rows (1000000)")
    parser.add_argument("--due", type=int, default=100_000, help="due rows (100000)")
    parser.add_argument("--rows", type=int, default=20_000, help="rows to claim per case")
    parser.add_argument("--timeout", type=float, default=300, help="max seconds of claiming")
    return parser.parse_args(argv)


if __name__ == "__main__":
    exit_cleanly_on_sigterm()
    asyncio.run(main(parse_args()))
