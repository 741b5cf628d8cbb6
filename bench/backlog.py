"""Claim throughput with and without a long history: does 10,000,000 sent rows slow the queue?

    .venv/bin/python bench/backlog.py [--history 1000000] [--due 100000] [--rows 20000]

Two fresh schemas (`odiseo migrate`'s tables via store.migrate()):

- empty:   only DUE pending rows (no history);
- history: HISTORY already-sent rows (each with its typed `sent` event, as the worker
  writes it) plus the same DUE rows.

Message ids are version-7 UUIDs made from each row's created_at (`--ids 7`, what
odiseo writes since issue 15 point 6), or random version-4 ones (`--ids 4`, before).

Both are filled as a bulk load would be: the secondary indexes, unique constraints
and the events' foreign key are dropped, rows written with INSERT ... SELECT
generate_series (the column list of src/odiseo/storage/tables.py) a million at a
time, then every index and constraint is recreated from its own definition (as read
from the catalog before the drop, so the tables end with exactly the indexes
`odiseo migrate` made) and the foreign key validated. The status counters' triggers
stay on throughout, so status_counts is kept exactly as in service. Then VACUUM
ANALYZE, as autovacuum would have done on a table that grew over time, and a
CHECKPOINT (needs a superuser; skipped otherwise) so the fill's writes are not
flushed during the timed part. The PostgreSQL server process doing the fill runs at
niceness FILL_NICE (10; when allowed: the server's user or root) to spare the machine's
other work; the timed part runs on ordinary ones. `--wait-idle S` waits up to S
seconds for idle CPUs (80 %) after the fill; the report gives the CPU idle share and
calibration at the start of the timed part.

Then PASSES times (after 3 warm-up reads), alternating between the two schemas so
that other load on the machine hits both alike:

- ROUNDS rounds of the reads behind GET /queue/status and /metrics: store.counts(),
  store.oldest_due_seconds(), and both endpoints through the real application
  (create_app with its lifespan, an API key, httpx's ASGI transport: route, auth,
  queries, serialisation; no network);
- the worker's loop without SMTP: store.claim_due(limit=50) and
  store.record_results(SENT) until ROWS rows are done in each, switching tables every
  1,000 rows. The baseline is the empty case of the same run; the slowdown is given
  over all passes and for each (DUE must cover PASSES x ROWS).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import statistics
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import httpx
from common import (
    DATABASE_URL,
    Report,
    bench_schema,
    calibrate,
    cpu_idle_share,
    exit_cleanly_on_sigterm,
    html_body,
    in_process_app,
    migrated_store,
    ms,
    percentile,
    rate,
    wait_for_idle_cpus,
)

from odiseo.domain.models import AttemptResult, Outcome
from odiseo.storage.postgres import PostgresStore

CLAIM = 50
BLOCK = 1_000  # rows claimed in one case before switching to the other
INSERT_CHUNK = 1_000_000
WORKER = "bench-backlog:1"
KEY = "bench-backlog-key-0123456789"
BULK_TABLES = ("emails", "email_events")

# One statement per chunk; $1 html template, $2 first n, $3 last n, $4 status, $5 "now",
# $6 the version of the message ids: 7, time-ordered from each row's created_at by the
# schema's own enqueue_uuid7() as odiseo writes them now, or 4, random as before.
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
    SELECT n, t, (CASE WHEN $6 = 7 THEN enqueue_uuid7(t) ELSE gen_random_uuid() END)::text AS u
    FROM (
        SELECT n, $5::timestamptz - ($3 - n) * CASE WHEN $4 = 'sent' THEN interval '2.5 seconds'
                                                     ELSE interval '30 milliseconds' END AS t
        FROM generate_series($2::bigint, $3::bigint) AS n
    ) AS g
) AS s
"""

# The outcome event record_results writes for a sent message, already fanned out to the
# webhooks (webhook_pending false), as it is in a history that grew over time.
INSERT_EVENTS = """
INSERT INTO email_events (email_id, at, kind, type, data, webhook_pending, attempt, smtp_code,
                          response, duration_ms, worker)
SELECT id, sent_at, 'sent', 'email.sent',
       json_build_object('accepted', to_addrs, 'refused', '[]'::json), false, 1, 250,
       '250 2.0.0 Ok: queued as 4XyZ1', 12, 'mail-1:4242:a1b2c3'
FROM emails WHERE status = 'sent' AND id BETWEEN $1 AND $2
"""

DUE_PLAN = """
EXPLAIN (FORMAT JSON)
SELECT id FROM emails
WHERE status IN ('pending', 'scheduled', 'processing') AND next_attempt_at <= now()
ORDER BY priority, next_attempt_at, id LIMIT 50 FOR UPDATE SKIP LOCKED
"""

# What a bulk load drops and recreates: every index but the primary keys, the unique
# constraints and the foreign keys between the two tables.
SECONDARY_INDEXES = """
SELECT i.indexrelid::regclass::text AS name, pg_get_indexdef(i.indexrelid) AS definition
FROM pg_index AS i
WHERE i.indrelid = ANY($1::regclass[]) AND NOT i.indisprimary
  AND NOT EXISTS (SELECT 1 FROM pg_constraint AS c WHERE c.conindid = i.indexrelid)
"""
CONSTRAINTS = """
SELECT c.conrelid::regclass::text AS owner, c.conname AS name,
       pg_get_constraintdef(c.oid) AS definition
FROM pg_constraint AS c
WHERE c.conrelid = ANY($1::regclass[]) AND c.contype IN ('u', 'f')
  AND (c.contype = 'u' OR c.confrelid = ANY($1::regclass[]))
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
    reads: dict[str, list[float]] = field(default_factory=dict)
    passes: list[tuple[int, float]] = field(default_factory=list)  # rows, seconds so far

    def pass_rates(self) -> list[float]:
        """Rows per second within each pass."""
        before = [(0, 0.0), *self.passes[:-1]]
        return [(r - r0) / (t - t0) for (r0, t0), (r, t) in zip(before, self.passes, strict=True)]

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0


def progress(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


async def nice_backend(conn: asyncpg.Connection, niceness: int) -> None:
    """Lower the priority of the connection's server process (a local server, and a user
    allowed to: the server's or root); the bulk load then spares the machine's other work."""
    if niceness > 0:
        pid = await conn.fetchval("SELECT pg_backend_pid()")
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, pid, niceness)


@contextlib.asynccontextmanager
async def bulk_load(conn: asyncpg.Connection) -> AsyncIterator[None]:
    """Drop the secondary indexes and constraints of BULK_TABLES; recreate them after."""
    tables = list(BULK_TABLES)
    indexes = await conn.fetch(SECONDARY_INDEXES, tables)
    constraints = await conn.fetch(CONSTRAINTS, tables)
    for c in constraints:
        if c["definition"].startswith("FOREIGN KEY"):
            await conn.execute(f'ALTER TABLE {c["owner"]} DROP CONSTRAINT "{c["name"]}"')
    for c in constraints:
        if not c["definition"].startswith("FOREIGN KEY"):
            await conn.execute(f'ALTER TABLE {c["owner"]} DROP CONSTRAINT "{c["name"]}"')
    for index in indexes:
        await conn.execute(f"DROP INDEX {index['name']}")
    yield
    for c in sorted(constraints, key=lambda c: c["definition"].startswith("FOREIGN KEY")):
        progress(f"  constraint {c['name']}")
        await conn.execute(
            f'ALTER TABLE {c["owner"]} ADD CONSTRAINT "{c["name"]}" {c["definition"]}'
        )
    for index in indexes:
        progress(f"  index {index['name']}")
        await conn.execute(index["definition"])


async def fill(
    conn: asyncpg.Connection, case: Case, now: dt.datetime, *, niceness: int, ids: int
) -> None:
    """HISTORY sent rows with their events, then DUE pending rows, then VACUUM ANALYZE."""
    template = html_body(0)
    await nice_backend(conn, niceness)
    # Index builds: in memory where they fit, and no parallel workers on a shared machine.
    await conn.execute("SET maintenance_work_mem = '512MB'")
    await conn.execute("SET max_parallel_maintenance_workers = 0")
    began = time.perf_counter()
    async with bulk_load(conn):
        for status, total in (("sent", case.history), ("pending", case.due)):
            for first in range(1, total + 1, INSERT_CHUNK):
                last = min(total, first + INSERT_CHUNK - 1)
                await conn.execute(INSERT_ROWS, template, first, last, status, now, ids)
                progress(f"{case.name}: {last:,} {status} rows")
        if case.history:
            top = await conn.fetchval("SELECT max(id) FROM emails")
            for first in range(1, top + 1, INSERT_CHUNK):
                await conn.execute(INSERT_EVENTS, first, first + INSERT_CHUNK - 1)
                progress(f"{case.name}: events up to id {first + INSERT_CHUNK - 1:,}")
        progress(f"{case.name}: recreating indexes and constraints")
    for table in (*BULK_TABLES, "status_counts"):
        progress(f"{case.name}: VACUUM ANALYZE {table}")
        await conn.execute(f"VACUUM ANALYZE {table}")
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


async def prepare(store: PostgresStore, case: Case, *, niceness: int, ids: int) -> None:
    """Fill the case's schema and check that its counters agree with the table."""
    conn = await asyncpg.connect(
        DATABASE_URL, timeout=10, server_settings={"search_path": store.schema}
    )
    try:
        await fill(conn, case, dt.datetime.now(dt.UTC), niceness=niceness, ids=ids)
        counted = await conn.fetchval("SELECT count(*) FROM emails")
    finally:
        await conn.close()
    kept = sum((await store.counts()).values())
    if kept != counted:
        raise RuntimeError(f"{case.name}: status_counts says {kept:,}, the table holds {counted:,}")


@contextlib.asynccontextmanager
async def api_client(schema: str) -> AsyncIterator[httpx.AsyncClient]:
    """The real application on `schema`, called in-process with an API key."""
    async with in_process_app(schema, KEY, bearer=True) as (_app, client):
        yield client


async def read_round(store: PostgresStore, client: httpx.AsyncClient, case: Case) -> None:
    """Each read behind /queue/status and /metrics once, timed; the endpoints too."""

    async def get(path: str) -> None:
        answer = await client.get(path)
        if answer.status_code != 200:
            raise RuntimeError(f"GET {path}: {answer.status_code} {answer.text[:200]}")

    reads: dict[str, Callable[[], Awaitable[object]]] = {
        "store.counts()": store.counts,
        "store.oldest_due_seconds()": lambda: store.oldest_due_seconds(now=dt.datetime.now(dt.UTC)),
        "GET /queue/status": lambda: get("/queue/status"),
        "GET /metrics": lambda: get("/metrics"),
    }
    for name, read in reads.items():
        began = time.perf_counter()
        await read()
        case.reads.setdefault(name, []).append(time.perf_counter() - began)


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


async def run_cases(cases: list[Case], args: argparse.Namespace) -> str:
    """Fill one schema per case, then read and claim, alternating between the cases.

    Alternating spreads whatever else the machine is doing evenly over the cases.
    Returns how idle the machine was when the timed part began.
    """
    async with contextlib.AsyncExitStack() as stack:
        stores, clients = [], []
        for case in cases:
            schema = await stack.enter_async_context(bench_schema())
            stores.append(await stack.enter_async_context(migrated_store(schema)))
            await prepare(stores[-1], case, niceness=args.fill_nice, ids=args.ids)
        for store in stores:
            clients.append(await stack.enter_async_context(api_client(store.schema)))
        idle = wait_for_idle_cpus(args.wait_idle) if args.wait_idle > 0 else cpu_idle_share()
        timed_start = f"CPUs idle {idle:.0%}, CPU calibration {calibrate():.0f} ms"
        for _ in range(3):  # warm-ups
            for store, client, case in zip(stores, clients, cases, strict=True):
                await read_round(store, client, case)
        for case in cases:
            case.reads.clear()
        deadline = time.perf_counter() + args.timeout
        for n in range(1, args.passes + 1):
            progress(f"pass {n}: the reads behind /queue/status and /metrics, then claims")
            for _ in range(args.rounds):
                for store, client, case in zip(stores, clients, cases, strict=True):
                    await read_round(store, client, case)
            target = cases[0].rows + args.rows
            while cases[0].rows < target and time.perf_counter() < deadline:
                block = min(BLOCK, target - cases[0].rows)
                for store, case in zip(stores, cases, strict=True):
                    await claim_block(store, case, block)
            for case in cases:
                case.passes.append((case.rows, case.seconds))
    return timed_start


async def main(args: argparse.Namespace) -> None:
    report = Report("backlog")
    report.header(
        "Backlog: claim throughput and queue reads vs history size",
        {
            "history (sent rows, + 1 event each)": f"{args.history:,}",
            "due rows (pending)": f"{args.due:,}",
            "passes (reads, then claims)": args.passes,
            "claimed + recorded per case and pass": f"{args.rows:,} ({CLAIM} per claim_due), "
            f"alternating every {BLOCK:,}",
            "timed reads per case and pass": f"{args.rounds} rounds (3 warm-ups), alternating",
            "message ids": f"version {args.ids}",
        },
    )
    empty = Case("empty (due rows only)", 0, args.due)
    full = Case(f"{args.history:,} sent + {args.due:,} due", args.history, args.due)
    cases = [empty, full]
    timed_start = await run_cases(cases, args)
    report.line(f"Before the timed part (after the fill): {timed_start}.")
    report.line()
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
    each = [100 * (1 - f / e) for e, f in zip(empty.pass_rates(), full.pass_rates(), strict=True)]
    report.line(
        f"Slowdown with history: {slowdown:.1f} % over all (negative = faster); per pass: "
        + ", ".join(f"{x:.1f} %" for x in each)
        + f" (median {statistics.median(each):.1f} %)."
    )
    report.line()
    report.table(
        ["read (median / slowest)", *(c.name for c in cases)],
        [
            [name, *(f"{ms(statistics.median(c.reads[name]))} / {ms(max(c.reads[name]))}"
                     for c in cases)]
            for name in empty.reads
        ],
    )  # fmt: skip
    report.table(
        ["table", "fill + indexes + VACUUM + CHECKPOINT", "size", "plan of the due scan"],
        [[c.name, f"{c.fill_seconds:.1f} s", c.table_size, c.plan] for c in cases],
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--history", type=int, default=1_000_000, help="sent rows (1000000)")
    parser.add_argument("--due", type=int, default=100_000, help="due rows (100000)")
    parser.add_argument("--rows", type=int, default=20_000, help="rows to claim per case and pass")
    parser.add_argument("--passes", type=int, default=1, help="passes of reads + claims (1)")
    parser.add_argument("--rounds", type=int, default=30, help="timed rounds of reads per case")
    parser.add_argument("--timeout", type=float, default=300, help="max seconds of claiming")
    parser.add_argument(
        "--wait-idle",
        type=float,
        default=0,
        help="max seconds to wait for idle CPUs after the fill",
    )
    parser.add_argument(
        "--ids",
        type=int,
        choices=(7, 4),
        default=7,
        help="version of the filled rows' message ids: 7 (time-ordered, as odiseo writes"
        " them) or 4 (random, as before)",
    )
    parser.add_argument(
        "--fill-nice", type=int, default=10, help="niceness of the server process filling (10)"
    )
    return parser.parse_args(argv)


if __name__ == "__main__":
    exit_cleanly_on_sigterm()
    asyncio.run(main(parse_args()))
