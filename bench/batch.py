"""Bulk enqueue throughput: PostgresStore.enqueue with lists of 500, and POST /emails/batch.

    .venv/bin/python bench/batch.py [--count 20000] [--chunk 500]

1. The store's bulk path: PostgresStore.enqueue(list of 500 NewEmail) per transaction
   (the values are built beforehand; only the store call is timed).
2. Baseline, same run, into the same table (a fresh schema each): the same rows with
   plain asyncpg, `executemany` of one INSERT and `COPY`, 500 per transaction.
3. `POST /emails/batch` on `odiseo api`, if the running code has it (checked in
   /openapi.json): 500 emails per request, one and two clients at a time; then two
   clients again with a client_message_id on every email (the idempotent path, which
   cannot use COPY). The note gives the api process's CPU per email.
4. The two-client run again on `odiseo api` with API_WORKERS=2 (--api-workers N; 1
   skips it).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx
from common import (
    DATABASE_URL,
    MemorySampler,
    Processes,
    Report,
    bench_schema,
    email_json,
    exit_cleanly_on_sigterm,
    free_port,
    mib,
    migrated_store,
    ms,
    new_email,
    odiseo_env,
    percentile,
    rate,
    tree_cpu_seconds,
    wait_http_ok,
)

from odiseo.domain.models import NewEmail
from odiseo.storage.rows import to_row

JSON_COLUMNS = {"to_addrs", "cc_addrs", "bcc_addrs", "reply_to", "headers", "tags", "meta"}


@dataclass
class Result:
    name: str
    emails: int
    seconds: float
    chunk_seconds: list[float]
    note: str = ""

    def row(self) -> list[object]:
        return [
            self.name,
            f"{self.emails:,}",
            f"{self.seconds:.2f} s",
            rate(self.emails / self.seconds),
            ms(percentile(self.chunk_seconds, 50)),
            ms(percentile(self.chunk_seconds, 99)),
            self.note,
        ]


def chunks(items: Sequence[Any], size: int) -> list[Sequence[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


async def timed(name: str, parts: Sequence[Any], call: Callable[[Any], Awaitable[int]]) -> Result:
    """Run `call` on each part in turn; the emails it reports and the time each part took."""
    spent: list[float] = []
    emails = 0
    for part in parts:
        began = time.perf_counter()
        emails += await call(part)
        spent.append(time.perf_counter() - began)
    return Result(name, emails, sum(spent), spent)


async def store_path(items: list[NewEmail], size: int) -> Result:
    async with bench_schema() as schema, migrated_store(schema) as store:

        async def enqueue(part: Sequence[NewEmail]) -> int:
            done = await store.enqueue(part, now=dt.datetime.now(dt.UTC))
            return sum(r.created for r in done)

        return await timed(f"PostgresStore.enqueue, lists of {size}", chunks(items, size), enqueue)


def as_records(items: list[NewEmail]) -> tuple[list[str], list[tuple[Any, ...]]]:
    """The rows odiseo would write, as asyncpg records (JSON columns as text)."""
    now = dt.datetime.now(dt.UTC)
    rows = [to_row(item, now=now) for item in items]
    columns = list(rows[0])
    records = [
        tuple(
            json.dumps(row[c]) if c in JSON_COLUMNS else (str(row[c]) if c == "status" else row[c])
            for c in columns
        )
        for row in rows
    ]
    return columns, records


async def asyncpg_path(items: list[NewEmail], size: int, *, copy: bool) -> Result:
    columns, records = as_records(items)
    async with bench_schema() as schema:
        async with migrated_store(schema):
            pass  # the same table and indexes as odiseo's
        conn = await asyncpg.connect(DATABASE_URL, timeout=10)
        try:
            await conn.execute(f'SET search_path TO "{schema}"')
            insert = (
                f"INSERT INTO emails ({', '.join(columns)}) "
                f"VALUES ({', '.join(f'${i + 1}' for i in range(len(columns)))})"
            )

            async def write(part: Sequence[tuple[Any, ...]]) -> int:
                async with conn.transaction():
                    if copy:
                        await conn.copy_records_to_table(
                            "emails", records=part, columns=columns, schema_name=schema
                        )
                    else:
                        await conn.executemany(insert, part)
                return len(part)

            name = "asyncpg COPY" if copy else "asyncpg executemany(INSERT)"
            return await timed(f"{name}, {size} per transaction", chunks(records, size), write)
        finally:
            await conn.close()


async def http_batch(
    procs: Processes, count: int, size: int, clients: list[int], *, workers: int = 1
) -> list[Result]:
    """POST /emails/batch on a fresh `odiseo api` with API_WORKERS=`workers`; [] when the
    endpoint does not exist. With several workers, only the last client count is run."""
    results: list[Result] = []
    async with bench_schema() as schema:
        port = free_port()
        env = odiseo_env(schema, API_PORT=str(port), API_WORKERS=str(workers))
        api = procs.odiseo("api-batch", ["api"], env)
        base = f"http://127.0.0.1:{port}"
        try:
            wait_http_ok(f"{base}/health", process=api, timeout=60)
            sampler = MemorySampler(api.pid).start()
            async with httpx.AsyncClient(base_url=base, timeout=120) as client:
                paths = (await client.get("/openapi.json")).json().get("paths", {})
                if "/emails/batch" not in paths:
                    return []
                for parallel in clients if workers == 1 else clients[-1:]:
                    bodies = batch_bodies(count, size, keyed=False)
                    results.append(await post_batches(client, bodies, parallel, size, api.pid))
                    if workers > 1:
                        results[-1].name += f", API_WORKERS={workers}"
                if workers == 1:
                    bodies = batch_bodies(count, size, keyed=True)
                    results.append(await post_batches(client, bodies, clients[-1], size, api.pid))
            peak = sampler.stop()
            conn = await asyncpg.connect(DATABASE_URL, timeout=10)
            try:
                stored = await conn.fetchval(f'SELECT count(*) FROM "{schema}".emails')
            finally:
                await conn.close()
            accepted = sum(r.emails for r in results)
            results[-1].note += f"; rows {stored:,} / accepted {accepted:,}"
            if workers == 1:  # with several, the sampled process is their supervisor
                results[-1].note += f"; api peak RSS {mib(peak)}"
        finally:
            procs.stop(api)
    return results


def batch_bodies(count: int, size: int, *, keyed: bool) -> list[bytes]:
    """`count` emails as POST /emails/batch bodies of `size`; keyed: each with its own
    client_message_id (fresh ones: nothing is a duplicate)."""
    run = time.time_ns()
    bodies = []
    for start in range(0, count, size):
        emails = [email_json(n) for n in range(start, start + size)]
        if keyed:
            for n, item in enumerate(emails, start=start):
                item["client_message_id"] = f"bench-{run}-{n}"
        bodies.append(json.dumps({"emails": emails}).encode())
    return bodies


async def post_batches(
    client: httpx.AsyncClient, bodies: list[bytes], parallel: int, size: int, pid: int
) -> Result:
    """Send every body, `parallel` requests at a time; counts the emails accepted."""
    queue = list(bodies)
    spent: list[float] = []
    accepted = 0

    async def one_client() -> None:
        nonlocal accepted
        while queue:
            body = queue.pop()
            began = time.perf_counter()
            response = await client.post(
                "/emails/batch", content=body, headers={"Content-Type": "application/json"}
            )
            spent.append(time.perf_counter() - began)
            if response.status_code != 202:
                raise RuntimeError(f"POST /emails/batch: {response.status_code} {response.text}")
            accepted += int(response.json()["accepted"])

    began, cpu_before = time.perf_counter(), tree_cpu_seconds(pid)
    await asyncio.gather(*(one_client() for _ in range(parallel)))
    elapsed, cpu = time.perf_counter() - began, tree_cpu_seconds(pid) - cpu_before
    keyed = b'"client_message_id"' in bodies[0]
    name = f"POST /emails/batch, {size} per request, {parallel} client(s)"
    if keyed:
        name += ", every email with a client_message_id"
    note = f"api CPU {1e6 * cpu / max(accepted, 1):.0f} µs/email"
    return Result(name, accepted, elapsed, spent, note)


async def main(args: argparse.Namespace) -> None:
    report = Report("batch")
    report.header(
        "Batch enqueue",
        {
            "emails per variant": f"{args.count:,}",
            "chunk": args.chunk,
            "message": "~2 KB HTML, one recipient",
        },
    )
    items = [new_email(n) for n in range(args.count)]
    results = [
        await store_path(items, args.chunk),
        await asyncpg_path(items, args.chunk, copy=False),
        await asyncpg_path(items, args.chunk, copy=True),
    ]
    with Processes() as procs:
        http = await http_batch(procs, args.count, args.chunk, [1, 2])
        if http and args.api_workers > 1:
            http += await http_batch(procs, args.count, args.chunk, [2], workers=args.api_workers)
    results += http
    report.table(
        ["path", "emails", "time", "emails/s", f"per {args.chunk} p50", "p99", "note"],
        [r.row() for r in results],
    )
    if not http:
        report.line("`POST /emails/batch` does not exist in this build: HTTP batch not measured.")
        report.line()
    store_rate = results[0].emails / results[0].seconds
    base_rate = results[1].emails / results[1].seconds
    report.line(
        f"The store's bulk path runs at {100 * store_rate / base_rate:.0f} % of plain asyncpg "
        "executemany of the same rows."
    )
    copy_rate = results[2].emails / results[2].seconds
    for result in http:
        if "client_message_id" not in result.name:
            share = 100 * result.emails / result.seconds / copy_rate
            report.line(f"{result.name}: {share:.0f} % of the asyncpg COPY baseline.")
    report.line()
    report.save()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=20_000, help="emails per variant (20000)")
    parser.add_argument("--chunk", type=int, default=500, help="emails per transaction (500)")
    parser.add_argument(
        "--api-workers", type=int, default=2, help="also run odiseo api with API_WORKERS=N (2)"
    )
    return parser.parse_args(argv)


if __name__ == "__main__":
    exit_cleanly_on_sigterm()
    asyncio.run(main(parse_args()))
