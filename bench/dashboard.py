"""How fast the dashboard's pages answer on a table of a million messages.

    .venv/bin/python bench/dashboard.py [--messages 1000000] [--day-events 1000000] [--runs 15]

A fresh schema (`odiseo migrate`'s tables) is filled with MESSAGES messages spread
over the last 30 days, about one every 2.6 s: 94 % sent, 3 % failed, 1 % cancelled,
1 % scheduled, 1 % pending, each with the typed event of its outcome (and one
`email.deferred` before 5 % of them), recipients at 200 domains, a tag on every
message and a rare one on 1 in 100,000. Bodies are short (about 300 bytes): the
pages read no body but the one message's they show. On top, DAY_EVENTS charted
events (94 % email.sent, 5 % email.deferred, 1 % email.failed) spread evenly over
the last 24 hours, as a service sending that many a day writes them: what the
overview's charts count. Then VACUUM ANALYZE, as autovacuum would have done on a
table that grew over time.

Each page is fetched through the real application (create_app, its lifespan, the
session cookie of a signed-in admin key) over httpx's ASGI transport, so the time
is the route's: session check, queries, template rendering; no network. Three
warm-up fetches, then RUNS timed ones; the median and the slowest are reported.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import re
import statistics
import time
from collections.abc import Awaitable, Callable

import asyncpg
import httpx
from common import (
    DATABASE_URL,
    Report,
    bench_schema,
    exit_cleanly_on_sigterm,
    in_process_app,
    migrated_store,
    ms,
)

from odiseo.operations import CHARTED, Activity
from odiseo.storage.contract import Store

KEY = "bench-dashboard-key-0123456789"
CHUNK = 100_000
SPACING = "2.6 seconds"

INSERT_ROWS = f"""
INSERT INTO emails (
    message_id, rfc_message_id, status, priority, attempts, max_retries, next_attempt_at,
    from_email, from_name, to_addrs, cc_addrs, bcc_addrs, reply_to, headers, subject, html,
    text, attachment_count, tags, meta, last_error, created_at, updated_at, sent_at
)
SELECT
    u, '<' || u || '@odiseo.io>', st, 5, CASE WHEN st IN ('sent', 'failed') THEN 1 ELSE 0 END,
    3, CASE WHEN st = 'pending' THEN t WHEN st = 'scheduled' THEN $3 + interval '1 day' END,
    'noreply@odiseo.io', 'Odiseo',
    json_build_array('customer' || (n % 50000) || '@domain' || (n % 200) || '.example'),
    '[]'::json, '[]'::json, '[]'::json, '[]'::json,
    'Your order #' || (100000 + n) || ' is confirmed',
    '<p>Hello, your order #' || (100000 + n) || ' is confirmed. '
      || repeat('Thank you for shopping with us. ', 8) || '</p>',
    NULL, 0,
    CASE WHEN n % 100000 = 7 THEN '["order", "rare"]'::json ELSE '["order"]'::json END,
    json_build_object('order_id', 100000 + n),
    CASE WHEN st = 'failed' THEN '550 5.1.1 <customer' || n || '@x>: no such user' END,
    t, t, CASE WHEN st = 'sent' THEN t + interval '2 seconds' END
FROM (
    SELECT n, gen_random_uuid()::text AS u, $3::timestamptz - ($4 - n) * interval '{SPACING}' AS t,
           CASE WHEN n % 100 < 94 THEN 'sent' WHEN n % 100 < 97 THEN 'failed'
                WHEN n % 100 = 97 THEN 'cancelled' WHEN n % 100 = 98 THEN 'scheduled'
                ELSE 'pending' END AS st
    FROM generate_series($1::bigint, $2::bigint) AS n
) AS s
"""

INSERT_EVENTS = """
INSERT INTO email_events (email_id, at, kind, type, attempt, smtp_code, response, duration_ms,
                          worker)
SELECT id, created_at + interval '2 seconds',
       CASE status WHEN 'sent' THEN 'sent' ELSE 'failed' END,
       CASE status WHEN 'sent' THEN 'email.sent' ELSE 'email.failed' END, 1,
       CASE status WHEN 'sent' THEN 250 ELSE 550 END,
       CASE status WHEN 'sent' THEN '250 2.0.0 Ok: queued as 4XyZ1' ELSE last_error END,
       12, 'mail-1:4242:a1b2c3'
FROM emails WHERE status IN ('sent', 'failed') AND id BETWEEN $1 AND $2
UNION ALL
SELECT id, created_at + interval '1 second', 'retry', 'email.deferred', 1, 451,
       '451 4.7.1 try again later', 30, 'mail-1:4242:a1b2c3'
FROM emails WHERE id % 20 = 3 AND id BETWEEN $1 AND $2
"""


INSERT_DAY_EVENTS = """
INSERT INTO email_events (email_id, at, kind, type, attempt, smtp_code, response, duration_ms,
                          worker)
SELECT 1 + n % $5, $3::timestamptz - (n * 86400.0 / $4) * interval '1 second',
       CASE WHEN n % 100 < 94 THEN 'sent' WHEN n % 100 < 99 THEN 'retry' ELSE 'failed' END,
       CASE WHEN n % 100 < 94 THEN 'email.sent' WHEN n % 100 < 99 THEN 'email.deferred'
            ELSE 'email.failed' END,
       2, 250, '250 2.0.0 Ok: queued as 4XyZ1', 12, 'mail-1:4242:a1b2c3'
FROM generate_series($1::bigint, $2::bigint) AS n
"""


async def fill(schema: str, *, messages: int, day_events: int, now: dt.datetime) -> str:
    conn = await asyncpg.connect(DATABASE_URL, server_settings={"search_path": schema})
    try:
        for first in range(1, messages + 1, CHUNK):
            last = min(messages, first + CHUNK - 1)
            await conn.execute(INSERT_ROWS, first, last, now, messages)
        top = await conn.fetchval("SELECT max(id) FROM emails")
        for first in range(1, top + 1, CHUNK):
            await conn.execute(INSERT_EVENTS, first, first + CHUNK - 1)
        for first in range(1, day_events + 1, CHUNK):
            last = min(day_events, first + CHUNK - 1)
            await conn.execute(INSERT_DAY_EVENTS, first, last, now, day_events, top)
        for table in ("emails", "email_events", "status_counts"):
            await conn.execute(f"VACUUM ANALYZE {table}")
        size: str = await conn.fetchval(
            "SELECT pg_size_pretty(pg_total_relation_size('emails'))"
            " || ' + events ' || pg_size_pretty(pg_total_relation_size('email_events'))"
        )
        return size
    finally:
        await conn.close()


async def sign_in(client: httpx.AsyncClient) -> str:
    form = await client.get("/ui/sign-in")
    csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
    assert csrf is not None
    answer = await client.post("/ui/sign-in", data={"csrf": csrf.group(1), "key": KEY})
    assert answer.status_code == 303, answer.text
    return str(answer.headers["location"])


async def pages(client: httpx.AsyncClient, schema: str) -> dict[str, str]:
    """The pages to time, with the ids they need looked up first."""
    conn = await asyncpg.connect(DATABASE_URL, server_settings={"search_path": schema})
    try:
        top = await conn.fetchval("SELECT max(id) FROM emails")
        middle = await conn.fetchval("SELECT message_id FROM emails WHERE id = $1", top // 2)
        recipient = await conn.fetchval("SELECT to_addrs->>0 FROM emails WHERE id = $1", top - 5)
    finally:
        await conn.close()
    first = await client.get("/ui/messages")
    older = re.search(r'href="/ui/messages\?([^"]+)" rel="next"', first.text)
    assert older is not None
    week_ago = (dt.datetime.now(dt.UTC) - dt.timedelta(days=7)).strftime("%Y-%m-%dT%H:%M")
    return {
        "overview": "/ui/",
        "overview (htmx refresh)": "/ui/overview/live",
        "messages, newest": "/ui/messages",
        "messages, page 2 (cursor)": "/ui/messages?" + older.group(1).replace("&amp;", "&"),
        "messages, status failed": "/ui/messages?status=failed",
        "messages, status pending": "/ui/messages?status=pending",
        "messages, created before a week ago": f"/ui/messages?before={week_ago}",
        "messages, tag order": "/ui/messages?tag=order",
        "messages, rare tag (10 in 1 M)": "/ui/messages?tag=rare",
        "messages, one recipient": f"/ui/messages?recipient={recipient}",
        "messages, tag rare + created in the last week": f"/ui/messages?tag=rare&after={week_ago}",
        "message detail": f"/ui/messages/{middle}",
        "message HTML (sandboxed)": f"/ui/messages/{middle}/html",
        "suppressions": "/ui/suppressions",
        "webhooks": "/ui/webhooks",
        "templates": "/ui/templates",
    }


async def measure(client: httpx.AsyncClient, path: str, runs: int) -> list[float]:
    times = []
    for n in range(3 + runs):
        began = time.perf_counter()
        answer = await client.get(path)
        spent = time.perf_counter() - began
        assert answer.status_code == 200, (path, answer.status_code, answer.text[:300])
        if n >= 3:
            times.append(spent)
    return times


async def overview_parts(store: Store, runs: int) -> list[list[str]]:
    """Each store call behind the overview, timed alone (median and slowest)."""
    now = dt.datetime.now(dt.UTC)
    ops = store.operations
    kept = Activity(store)
    calls: dict[str, Callable[[], Awaitable[object]]] = {
        "counts() (status_counts)": store.counts,
        "oldest_due_seconds()": lambda: store.oldest_due_seconds(now=now),
        "activity, last hour per minute": lambda: ops.activity(
            CHARTED, since=now - dt.timedelta(hours=1), span_seconds=60
        ),
        "activity, last day per hour": lambda: ops.activity(
            CHARTED, since=now - dt.timedelta(days=1), span_seconds=3600
        ),
        "charts, a process's first view (Activity: reads the day)": lambda: Activity(store).charts(
            now=now
        ),
        "charts, the views after it (Activity: settled spans kept)": lambda: kept.charts(now=now),
        "failures, last day (newest 1,000)": lambda: ops.failures(
            since=now - dt.timedelta(days=1), limit=1000
        ),
        "workers()": ops.workers,
    }
    rows = []
    for name, call in calls.items():
        times = []
        for n in range(3 + runs):
            began = time.perf_counter()
            await call()
            if n >= 3:
                times.append(time.perf_counter() - began)
        rows.append([name, ms(statistics.median(times)), ms(max(times))])
    return rows


async def main(args: argparse.Namespace) -> None:
    report = Report("dashboard")
    report.header(
        "Dashboard pages on a table of a million messages",
        {
            "messages": f"{args.messages:,} over 30 days (94 % sent, 3 % failed, 3 % other)",
            "events": "one per finished message, + email.deferred on 5 %",
            "charted events in the last 24 hours": f"{args.day_events:,} more",
            "timed fetches per page": f"{args.runs} after 3 warm-ups, in-process (ASGI)",
        },
    )
    async with bench_schema() as schema, migrated_store(schema):
        began = time.perf_counter()
        now = dt.datetime.now(dt.UTC)
        size = await fill(schema, messages=args.messages, day_events=args.day_events, now=now)
        report.line(f"Filled in {time.perf_counter() - began:.0f} s: {size}.")
        report.line()
        async with in_process_app(schema, KEY) as (app, client):
            await sign_in(client)
            rows = []
            for name, path in (await pages(client, schema)).items():
                times = await measure(client, path, args.runs)
                rows.append([name, ms(statistics.median(times)), ms(max(times))])
            parts = await overview_parts(app.state.service.store, args.runs)
    report.table(["page", "median", "slowest"], rows)
    report.line("The overview's queries, each on its own:")
    report.line()
    report.table(["query", "median", "slowest"], parts)
    report.save()


if __name__ == "__main__":
    exit_cleanly_on_sigterm()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--day-events", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=15)
    asyncio.run(main(parser.parse_args()))
