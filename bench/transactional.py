"""Queue mail in your own transaction: what the SQL function enqueue()'s NOTIFY costs.

The function wakes the workers with a NOTIFY inside the caller's transaction, which
PostgreSQL delivers at commit. A transaction that notified takes a database-wide lock
while it commits, so concurrent committers queue on it: the cost migration 0005 took
away from the store's own inserts, which send one delayed NOTIFY after their commits
instead (PostgresStore._wake_after_commit). Measured here, in one sitting:

1. Commits per second of C concurrent application transactions, each
   `BEGIN; SELECT enqueue(…); COMMIT` on its own asyncpg connection: the function as
   installed (NOTIFY inside) against the same function without the NOTIFY; and the
   store's own enqueue from C concurrent tasks (one row per call, its delayed NOTIFY)
   as the baseline it must not slow down: also run beside C function callers, with
   and without the NOTIFY (the CPU both share is the same; the lock is the difference).
2. Wake-up latency, commit -> a LISTENing connection hears it (what a worker waits
   on): the function's NOTIFY at commit, and the store's delayed one.
3. Commit -> delivered by a running `odiseo worker` (outbox provider): the function
   with NOTIFY, and without (the worker then finds the mail at its next poll,
   EMAIL_WORKER_POLL_INTERVAL).

    .venv/bin/python bench/transactional.py [--clients 1,8,16] [--seconds 8] [--deliveries 40]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import asyncpg
from common import (
    DATABASE_URL,
    Processes,
    Report,
    bench_schema,
    email_json,
    exit_cleanly_on_sigterm,
    migrated_store,
    ms,
    new_email,
    odiseo_env,
    percentile,
    rate,
)

from odiseo.domain.models import EnqueueSettings
from odiseo.storage import enqueue_function
from odiseo.storage.postgres import PostgresStore

EMAIL = email_json(0)  # the ~2 KB order confirmation the store's rows carry too


async def publish(store: PostgresStore) -> None:
    await store.publish_enqueue_settings(
        EnqueueSettings(
            from_email="noreply@odiseo.io",
            from_name="Odiseo",
            allowed_senders=(),
            message_id_domain="odiseo.io",
            max_message_bytes=10 * 1024 * 1024,
            max_retries=3,
        ),
        now=datetime.now(UTC),
    )


async def install(store: PostgresStore, *, wake: bool) -> None:
    """The function with or without its NOTIFY (the migration installed it with)."""
    conn = await asyncpg.connect(DATABASE_URL)
    try:
        for statement in enqueue_function.statements(
            store.schema, channel=store.channel, wake=wake
        ):
            await conn.execute(statement)
    finally:
        await conn.close()


async def timed_loop(
    clients: int, seconds: float, one: Callable[[int], Awaitable[None]]
) -> tuple[float, list[float]]:
    """Run `one(client)` in `clients` concurrent loops for `seconds`: calls/s, latencies."""
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds

    async def loop(client: int) -> None:
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            await one(client)
            latencies.append(time.perf_counter() - started)

    began = time.perf_counter()
    await asyncio.gather(*(loop(c) for c in range(clients)))
    return len(latencies) / (time.perf_counter() - began), latencies


async def function_callers(schema: str, clients: int, seconds: float) -> tuple[float, list[float]]:
    conns = [await asyncpg.connect(DATABASE_URL) for _ in range(clients)]
    query = f'SELECT "{schema}".enqueue($1::text::jsonb)'
    payload = json.dumps(EMAIL)

    async def one(client: int) -> None:
        conn = conns[client]
        async with conn.transaction():
            await conn.fetchval(query, payload)

    try:
        return await timed_loop(clients, seconds, one)
    finally:
        for conn in conns:
            await conn.close()


async def store_callers(
    store: PostgresStore, clients: int, seconds: float
) -> tuple[float, list[float]]:
    async def one(client: int) -> None:
        await store.enqueue([new_email(client)], now=datetime.now(UTC))

    return await timed_loop(clients, seconds, one)


async def throughput(report: Report, clients_list: list[int], seconds: float) -> None:
    rows = []
    for clients in clients_list:
        async with bench_schema() as schema, migrated_store(schema, pool_size=clients) as store:
            await publish(store)
            figures: dict[str, tuple[float, list[float]]] = {}
            await install(store, wake=True)
            figures["function, NOTIFY at commit"] = await function_callers(schema, clients, seconds)
            await install(store, wake=False)
            figures["function, no NOTIFY"] = await function_callers(schema, clients, seconds)
            figures["store.enqueue (delayed NOTIFY)"] = await store_callers(store, clients, seconds)
            for wake in (False, True):  # the store's inserts beside C function callers
                await install(store, wake=wake)
                mixed = await asyncio.gather(
                    store_callers(store, clients, seconds),
                    function_callers(schema, clients, seconds),
                )
                kind = "NOTIFY" if wake else "no-NOTIFY"
                figures[f"store.enqueue beside C {kind} function callers"] = mixed[0]
                figures[f"(those {kind} function callers)"] = mixed[1]
            await install(store, wake=True)
        for name, (per_second, latencies) in figures.items():
            rows.append(
                [
                    clients,
                    name,
                    rate(per_second),
                    ms(percentile(latencies, 50)),
                    ms(percentile(latencies, 99)),
                ]
            )
    report.line("### Commits per second, C concurrent transactions of one email each")
    report.line()
    report.table(["C", "path", "commits/s", "p50", "p99"], rows)


async def wake_latency(report: Report, count: int) -> None:
    """Commit -> heard by a LISTENing connection (a worker's wait)."""
    async with bench_schema() as schema, migrated_store(schema) as store:
        await publish(store)
        heard: asyncio.Queue[float] = asyncio.Queue()
        listener = await asyncpg.connect(DATABASE_URL)
        await listener.add_listener(store.channel, lambda *_: heard.put_nowait(time.perf_counter()))
        app = await asyncpg.connect(DATABASE_URL)
        query = f'SELECT "{schema}".enqueue($1::text::jsonb)'
        function: list[float] = []
        by_store: list[float] = []
        try:
            for n in range(count):
                async with app.transaction():
                    await app.fetchval(query, json.dumps(EMAIL))
                committed = time.perf_counter()
                function.append(await asyncio.wait_for(heard.get(), 10) - committed)
                await store.enqueue([new_email(n)], now=datetime.now(UTC))
                returned = time.perf_counter()  # the store commits before it returns
                by_store.append(await asyncio.wait_for(heard.get(), 10) - returned)
                await asyncio.sleep(0.02)
        finally:
            await app.close()
            await listener.close()
    report.line("### Wake-up: commit -> NOTIFY heard by a listening connection")
    report.line()
    report.table(
        ["path", "n", "p50", "p99", "max"],
        [
            [name, len(v), ms(percentile(v, 50)), ms(percentile(v, 99)), ms(max(v))]
            for name, v in (
                ("function (NOTIFY at commit)", function),
                ("store.enqueue (NOTIFY after commit)", by_store),
            )
        ],
    )


async def delivered_latency(report: Report, count: int, poll_interval: str) -> None:
    """Commit -> sent_at of a running `odiseo worker` (outbox), with and without NOTIFY."""
    rows = []
    for wake in (True, False):
        async with bench_schema() as schema:
            with Processes() as processes:
                env = odiseo_env(
                    schema,
                    EMAIL_PROVIDER="outbox",
                    OUTBOX_DIR=str(processes.workdir / "outbox"),
                    EMAIL_WORKER_POLL_INTERVAL=poll_interval,
                )
                worker = processes.odiseo("worker", ["worker"], env)
                conn = await asyncpg.connect(DATABASE_URL)
                try:
                    await wait_installed(conn, schema, worker, processes)
                    if not wake:
                        async with migrated_store(schema) as store:
                            await install(store, wake=False)
                    latencies = await commit_to_sent(conn, schema, count)
                finally:
                    await conn.close()
                    processes.stop(worker)
        name = "function, NOTIFY at commit" if wake else "function, no NOTIFY (next poll)"
        rows.append(
            [
                name,
                len(latencies),
                ms(percentile(latencies, 50)),
                ms(percentile(latencies, 99)),
                ms(max(latencies)),
            ]
        )
    report.line(
        "### Commit -> sent by a running `odiseo worker` "
        f"(outbox, EMAIL_WORKER_POLL_INTERVAL={poll_interval})"
    )
    report.line()
    report.table(["path", "n", "p50", "p99", "max"], rows)


async def wait_installed(
    conn: asyncpg.Connection, schema: str, worker: Any, processes: Processes
) -> None:
    for _ in range(300):
        if worker.poll() is not None:
            raise SystemExit(f"odiseo worker exited:\n{processes.log_tail(worker)}")
        found = await conn.fetchval(
            "SELECT count(*) FROM pg_proc WHERE proname = 'enqueue' "
            "AND pronamespace = (SELECT oid FROM pg_namespace WHERE nspname = $1)",
            schema,
        )
        settings = found and await conn.fetchval(
            f'SELECT count(*) FROM "{schema}".enqueue_settings'
        )
        if settings:
            await asyncio.sleep(1.0)  # the worker's first claim and LISTEN
            return
        await asyncio.sleep(0.1)
    raise SystemExit("the worker did not migrate in 30 s")


async def commit_to_sent(conn: asyncpg.Connection, schema: str, count: int) -> list[float]:
    query = f'SELECT "{schema}".enqueue($1::text::jsonb)'
    latencies = []
    for _ in range(count):
        async with conn.transaction():
            message_id = str(await conn.fetchval(query, json.dumps(EMAIL)))
        committed = datetime.now(UTC)
        for _ in range(6000):
            sent = await conn.fetchval(
                f'SELECT sent_at FROM "{schema}".emails WHERE message_id = $1', message_id
            )
            if sent is not None:
                break
            await asyncio.sleep(0.002)
        else:
            raise SystemExit("a message was not sent in 12 s")
        latencies.append(max(0.0, (sent - committed).total_seconds()))
        await asyncio.sleep(0.05)
    return latencies


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", default="1,8,16")
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--wakeups", type=int, default=200)
    parser.add_argument("--deliveries", type=int, default=40)
    parser.add_argument("--poll-interval", default="1.0")
    args = parser.parse_args()
    clients = [int(c) for c in args.clients.split(",")]
    report = Report("transactional")
    report.header(
        "Transactional enqueue: the SQL function's NOTIFY",
        {"clients": args.clients, "seconds per run": args.seconds},
    )
    await throughput(report, clients, args.seconds)
    await wake_latency(report, args.wakeups)
    await delivered_latency(report, args.deliveries, args.poll_interval)
    report.save()


if __name__ == "__main__":
    exit_cleanly_on_sigterm()
    asyncio.run(main())
