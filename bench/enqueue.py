"""Enqueue throughput and latency of `POST /emails` under wrk, against a bare FastAPI baseline.

    .venv/bin/python bench/enqueue.py [--duration 15] [--connections 64] [--threads 2]

1. `odiseo api` (PostgreSQL, one process) loaded by wrk with a ~2 KB JSON email:
   req/s, p50, p99 (wrk --latency), peak RSS; the rows stored are checked
   against the 2xx answers wrk counted.
2. Baseline, same run, same server stack (uvicorn, one process): bench/bare_app.py
   with POST /parse (parse, 202) and POST /insert (parse + one asyncpg INSERT).
3. Open loop at half odiseo's peak rate (bench/openloop.py, since wrk cannot hold a
   rate): p50/p99 of POST /emails and of the bare /insert at that same rate.
4. The store's share, in-process without HTTP: PostgresStore.enqueue_one from 1, 10
   (the pool size) and 64 concurrent callers, with the new DB connections counted.
5. The wrk peak again on `odiseo api` with API_WORKERS=2 (--api-workers N; 1 skips it):
   several processes on one port, their CPU summed.

`--servers uvicorn,granian` serves the same app (`odiseo.serve:api_process`, what each
of API_WORKERS' processes runs) under each HTTP server in turn, in the order given, all
before the bare baseline: granian (a Rust HTTP server, `pip install granian`; not a
dependency of odiseo) in one worker process with uvloop, HTTP/1.1, no websockets. Every
server's open loop runs at half the first one's wrk peak, so their p99s are at one rate.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
from common import (
    BENCH_DIR,
    DATABASE_URL,
    ODISEO,
    WRK,
    MemorySampler,
    Processes,
    Report,
    bench_schema,
    cpu_seconds,
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
    require_tools,
    tree_cpu_seconds,
    wait_http_ok,
)
from openloop import client_for, open_loop, summary
from profiling import PySpy, find_py_spy

_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}


@dataclass
class WrkRun:
    endpoint: str
    requests: int = 0
    seconds: float = 0.0
    rps: float = 0.0
    non_2xx: int = 0
    socket_errors: int = 0
    percentiles: dict[str, float] = field(default_factory=dict)  # "50%" -> seconds
    max_seconds: float = 0.0
    cpu_seconds: float = 0.0  # CPU the server process used during the run

    @property
    def cpu_per_request(self) -> str:
        return f"{1000 * self.cpu_seconds / self.requests:.2f} ms" if self.requests else "n/a"

    @property
    def ok(self) -> int:
        return self.requests - self.non_2xx


def run_wrk(url: str, body_file: str, *, seconds: int, connections: int, threads: int) -> WrkRun:
    """wrk --latency with bench/post_email.lua; bounded by its -d and a hard timeout."""
    argv = [
        WRK,
        f"-t{threads}",
        f"-c{connections}",
        f"-d{seconds}s",
        "--timeout",
        "10s",
        "--latency",
        "-s",
        str(BENCH_DIR / "post_email.lua"),
        url,
        "--",
        body_file,
    ]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr[-500:]}")
    return parse_wrk(url, done.stdout)


def parse_wrk(endpoint: str, output: str) -> WrkRun:
    run = WrkRun(endpoint=endpoint)
    bench_lines = " ".join(re.findall(r"^BENCH (.*)$", output, re.M))  # from post_email.lua
    facts = dict(re.findall(r"([\w.]+)=(\d+)", bench_lines))
    run.requests = int(facts["requests"])
    run.seconds = int(facts["duration_us"]) / 1e6
    run.rps = run.requests / run.seconds
    run.non_2xx = int(facts["status"])
    run.socket_errors = sum(int(facts[k]) for k in ("connect", "read", "write", "timeout"))
    # The --latency block: "     50%    1.23ms"
    for pct, value, unit in re.findall(
        r"^\s+(\d+(?:\.\d+)?%)\s+([\d.]+)(us|ms|s|m)\s*$", output, re.M
    ):
        run.percentiles[pct] = float(value) * _UNITS[unit]
    run.max_seconds = int(facts["max_us"]) / 1e6
    return run


async def count_rows(schema: str, table: str) -> int:
    conn = await asyncpg.connect(DATABASE_URL, timeout=10)
    try:
        return int(await conn.fetchval(f'SELECT count(*) FROM "{schema}".{table}'))
    finally:
        await conn.close()


async def half_rate(url: str, body: bytes, rate_per_s: float, seconds: float) -> dict[str, Any]:
    in_flight = 256
    async with client_for(in_flight) as client:
        result = await open_loop(
            client,
            url,
            rate=rate_per_s,
            duration=seconds,
            body=lambda _: body,
            max_in_flight=in_flight,
        )
    return summary(result)


@dataclass
class StoreOnly:
    concurrency: int
    done: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)


async def store_only(schema: str, concurrency: int, seconds: float) -> StoreOnly:
    """In-process PostgresStore.enqueue of one message from `concurrency` callers: the
    store's share."""
    result = StoreOnly(concurrency)
    async with migrated_store(schema) as store:
        await asyncio.gather(*(store.ping() for _ in range(concurrency)))  # warm the pool
        deadline = time.perf_counter() + seconds

        async def caller(offset: int) -> None:
            n = offset
            while time.perf_counter() < deadline:
                began = time.perf_counter()
                await store.enqueue([new_email(n)], now=dt.datetime.now(dt.UTC))
                result.latencies.append(time.perf_counter() - began)
                n += concurrency

        began = time.perf_counter()
        await asyncio.gather(*(caller(i) for i in range(concurrency)))
        result.seconds = time.perf_counter() - began
        result.done = len(result.latencies)
    return result


@dataclass
class Server:
    name: str
    peak_kib: int = 0
    wrk: list[WrkRun] = field(default_factory=list)
    rows: dict[str, tuple[int, int]] = field(default_factory=dict)  # endpoint -> (2xx, rows)
    open_loop: dict[str, dict[str, Any]] = field(default_factory=dict)
    log_tail: str = ""  # the server's last log lines, kept when a request failed


@dataclass(kw_only=True)
class Load:
    """What every wrk run of this benchmark sends, and for how long."""

    schema: str
    body: bytes
    body_file: str
    wrk: dict[str, int]  # run_wrk's seconds, connections and threads
    warmup: int

    def run(self, url: str) -> WrkRun:
        return run_wrk(url, self.body_file, **self.wrk)


async def warm_up(load: Load, url: str, *, table: str) -> int:
    """A warm-up run (not counted), then the rows `table` holds before the measured one."""
    run_wrk(url, load.body_file, **{**load.wrk, "seconds": load.warmup})
    await asyncio.sleep(1.0)  # let the warm-up's last requests commit
    return await count_rows(load.schema, table)


async def rows_added(load: Load, *, table: str, before: int) -> int:
    await asyncio.sleep(1.0)  # requests in flight when wrk stopped may still commit
    return await count_rows(load.schema, table) - before


async def counted_run(
    load: Load, url: str, *, table: str, cpu: Callable[[], float]
) -> tuple[WrkRun, int]:
    """Warm up, then one measured wrk run: the server's CPU (by `cpu`) and the rows stored."""
    before = await warm_up(load, url, table=table)
    used = cpu()
    run = load.run(url)
    run.cpu_seconds = cpu() - used
    return run, await rows_added(load, table=table, before=before)


@dataclass
class OdiseoRun:
    server: Server
    target: float  # half the wrk peak: the open-loop rate
    exit_code: int | None
    spy: PySpy | None


def granian_argv(port: int) -> list[str]:
    """The odiseo app under granian, set up as `odiseo api` sets up uvicorn."""
    return [
        str(ODISEO.with_name("granian")),
        "--interface", "asgi",
        "--factory",
        "--host", "127.0.0.1",
        "--port", str(port),
        "--workers", "1",
        "--loop", "uvloop",
        "--http", "1",
        "--no-ws",
        "--log-level", "warning",
        "--no-access-log",
        "odiseo.serve:api_process",
    ]  # fmt: skip


def serving_pid(pid: int, *, timeout: float = 10.0) -> int:
    """The process that runs the app: granian's only child (its worker), or `pid`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        if children:
            return int(children[0])
        time.sleep(0.1)
    return pid


async def measure_odiseo(
    procs: Processes,
    load: Load,
    args: argparse.Namespace,
    *,
    py_spy: str | None,
    server: str = "uvicorn",
    target: float | None = None,
) -> OdiseoRun:
    """`odiseo api` (or its app under `server`): the wrk peak (py-spy recording it with
    --profile), then the open loop at `target` req/s (default: half that peak)."""
    odiseo = Server("odiseo api" if server == "uvicorn" else f"odiseo app under {server}")
    port = free_port()
    env = odiseo_env(load.schema, API_PORT=str(port))
    if server == "granian":
        # What `odiseo api` does before it serves (and API_WORKERS' supervisor before its
        # processes start): migrate and publish the settings.
        migrate = [str(ODISEO), "migrate"]
        await asyncio.to_thread(subprocess.run, migrate, env=env, check=True, timeout=120)
        api = procs.start("api-granian", granian_argv(port), env=env)
    else:
        api = procs.start("api", [args.odiseo or str(ODISEO), "api"], env=env)
    base = f"http://127.0.0.1:{port}"
    wait_http_ok(f"{base}/health", process=api, timeout=60)
    serving = serving_pid(api.pid) if server == "granian" else api.pid
    sampler = MemorySampler(serving).start()
    url = f"{base}/emails"
    before = await warm_up(load, url, table="emails")
    spy = None
    if py_spy:
        seconds = min(args.profile, args.duration)
        spy = PySpy(procs, py_spy, pid=api.pid, seconds=seconds, name=f"enqueue-api-{load.schema}")
    cpu = tree_cpu_seconds(api.pid)
    peak = load.run(url)
    peak.cpu_seconds = tree_cpu_seconds(api.pid) - cpu
    if spy is not None:
        spy.finish()
    stored = await rows_added(load, table="emails", before=before)
    odiseo.rows[f"odiseo POST /emails ({server})"] = (peak.ok, stored)
    peak.endpoint = f"odiseo POST /emails ({server})"
    odiseo.wrk.append(peak)
    target = peak.rps / 2 if target is None else target
    steady = await half_rate(url, load.body, target, args.duration)
    odiseo.open_loop[f"odiseo POST /emails ({server})"] = steady
    odiseo.peak_kib = sampler.stop()
    api_exit = procs.stop(api)
    if peak.non_2xx or peak.socket_errors or steady["failed"]:
        odiseo.log_tail = procs.log_tail(api, lines=30)
    return OdiseoRun(server=odiseo, target=target, exit_code=api_exit, spy=spy)


async def measure_bare(procs: Processes, load: Load, *, target: float, duration: int) -> Server:
    """The bare FastAPI baseline: /parse and /insert under wrk, /insert in open loop."""
    bare = Server("bare FastAPI (bench/bare_app.py)")
    port = free_port()
    app = procs.start(
        "bare-app",
        [sys.executable, str(BENCH_DIR / "bare_app.py"), "--port", str(port)],
        env={
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "BENCH_DATABASE_URL": DATABASE_URL,
            "BENCH_SCHEMA": load.schema,
        },
    )
    base = f"http://127.0.0.1:{port}"
    wait_http_ok(f"{base}/health", process=app, timeout=60)
    sampler = MemorySampler(app.pid).start()
    for path in ("/parse", "/insert"):
        run, stored = await counted_run(
            load, f"{base}{path}", table="bare_emails", cpu=lambda: cpu_seconds(app.pid)
        )
        if path == "/insert":
            bare.rows[f"bare POST {path}"] = (run.ok, stored)
        run.endpoint = f"bare POST {path}"
        bare.wrk.append(run)
    bare.open_loop["bare POST /insert"] = await half_rate(
        f"{base}/insert", load.body, target, duration
    )
    bare.peak_kib = sampler.stop()
    procs.stop(app)
    return bare


async def measure_api_workers(procs: Processes, load: Load, odiseo: Server, workers: int) -> None:
    """The same wrk load on API_WORKERS processes, their CPU summed."""
    name = f"odiseo POST /emails, API_WORKERS={workers}"
    port = free_port()
    env = odiseo_env(load.schema, API_PORT=str(port), API_WORKERS=str(workers))
    multi = procs.odiseo("api-workers", ["api"], env)
    wait_http_ok(f"http://127.0.0.1:{port}/health", process=multi, timeout=60)
    run, stored = await counted_run(
        load,
        f"http://127.0.0.1:{port}/emails",
        table="emails",
        cpu=lambda: tree_cpu_seconds(multi.pid),
    )
    odiseo.rows[name] = (run.ok, stored)
    run.endpoint = name
    odiseo.wrk.append(run)
    procs.stop(multi)


async def main(args: argparse.Namespace) -> None:
    require_tools(WRK)
    report = Report("enqueue")
    report.header(
        "Enqueue: POST /emails under wrk",
        {
            "wrk": f"-t{args.threads} -c{args.connections} -d{args.duration}s --latency",
            "warm-up per endpoint": f"{args.warmup} s (not counted)",
            "open loop": f"{args.duration} s at half odiseo's wrk peak",
            "body": f"{len(json.dumps(email_json()))} B JSON, ~2 KB HTML",
            "server": f"1 process each: odiseo's app under {', '.join(args.servers)}; "
            "bench/bare_app.py under uvicorn",
        },
    )
    wrk_args = {"seconds": args.duration, "connections": args.connections, "threads": args.threads}
    body = json.dumps(email_json()).encode()
    py_spy = find_py_spy(args.py_spy) if args.profile else None
    async with bench_schema() as schema:
        with Processes() as procs:
            body_file = procs.workdir / "email.json"
            body_file.write_bytes(body)
            load = Load(
                schema=schema, body=body, body_file=str(body_file), wrk=wrk_args, warmup=args.warmup
            )
            runs: list[OdiseoRun] = []
            for server in args.servers:
                target = runs[0].target if runs else None
                runs.append(
                    await measure_odiseo(
                        procs, load, args, py_spy=py_spy, server=server, target=target
                    )
                )
            odiseo = runs[0]
            bare = await measure_bare(procs, load, target=odiseo.target, duration=args.duration)
            if args.api_workers > 1:
                await measure_api_workers(procs, load, odiseo.server, args.api_workers)
        store_runs = [
            await store_only(schema, concurrency, args.duration)
            for concurrency in ((1, 10, args.connections) if args.store_only else ())
        ]
    report_peak(report, args, [*(w for run in runs for w in run.server.wrk), *bare.wrk])
    report_open_loop(report, args, odiseo.target, [*(run.server for run in runs), bare])
    if store_runs:
        report_store_only(report, args, store_runs)
    report_memory_and_rows(report, runs, bare)
    if odiseo.spy is not None:
        odiseo.spy.report(report, "`odiseo api` during the wrk peak run")
    elif args.profile:
        report.line("(py-spy not found: pass --py-spy PATH; profiling skipped)")
    report.save()


def report_peak(report: Report, args: argparse.Namespace, runs: list[WrkRun]) -> None:
    report.line(f"### Peak: wrk -t{args.threads} -c{args.connections} -d{args.duration}s")
    report.line()
    report.table(
        ["endpoint", "requests", "req/s", "p50", "p90", "p99", "max", "non-2xx", "socket errors",
         "server CPU per request"],
        [
            [
                r.endpoint,
                f"{r.requests:,}",
                rate(r.rps),
                ms(r.percentiles.get("50%", float("nan"))),
                ms(r.percentiles.get("90%", float("nan"))),
                ms(r.percentiles.get("99%", float("nan"))),
                ms(r.max_seconds),
                r.non_2xx,
                r.socket_errors,
                r.cpu_per_request,
            ]
            for r in runs
        ],
    )  # fmt: skip
    report.line(
        "Server CPU per request = user + system CPU of the server process during the run "
        "(/proc/PID/stat) / requests answered: it does not depend on how busy the machine is."
    )
    report.line()


def report_open_loop(
    report: Report, args: argparse.Namespace, target: float, servers: list[Server]
) -> None:
    report.line(f"### Open loop at half odiseo's peak: {target:,.0f} req/s for {args.duration} s")
    report.line()
    report.line(
        "Latency from when each request was due (bench/openloop.py: a minimal asyncio HTTP/1.1 "
        "keep-alive client, up to 256 in flight). Generator CPU = the bench process's CPU per "
        "request sent: what the generator took from the cores it shares with the server."
    )
    report.line()
    report.table(
        ["endpoint", "target req/s", "achieved req/s", "2xx", "p50", "p99", "max", "failed",
         "skipped", "generator lag max", "generator CPU per request"],
        [
            [
                name,
                rate(s["target_rate"]),
                rate(s["achieved_rate"]),
                f"{int(s['ok']):,}",
                f"{s['p50_ms']:.1f} ms",
                f"{s['p99_ms']:.1f} ms",
                f"{s['max_ms']:.1f} ms",
                s["failures"] or 0,
                int(s["skipped"] + s["unfinished"]),
                f"{s['max_lag_ms']:.1f} ms",
                f"{s['generator_cpu_us_per_request']:.0f} us",
            ]
            for server in servers
            for name, s in server.open_loop.items()
        ],
    )  # fmt: skip


def report_store_only(report: Report, args: argparse.Namespace, runs: list[StoreOnly]) -> None:
    report.line(
        f"### Store only, in-process: PostgresStore.enqueue_one, {args.duration} s "
        "(no HTTP; odiseo's asyncpg pool of 10)"
    )
    report.line()
    report.table(
        ["concurrent callers", "enqueues", "enqueues/s", "p50", "p99"],
        [
            [
                r.concurrency,
                f"{r.done:,}",
                rate(r.done / r.seconds),
                ms(percentile(r.latencies, 50)),
                ms(percentile(r.latencies, 99)),
            ]
            for r in runs
        ],
    )  # fmt: skip


def report_memory_and_rows(report: Report, runs: list[OdiseoRun], bare: Server) -> None:
    servers = [run.server for run in runs]
    report.line("### Memory")
    report.line()
    report.table(
        ["process", "peak RSS (VmHWM)"],
        [[s.name, mib(s.peak_kib)] for s in (*servers, bare)],
    )
    report.line("### Rows stored vs 2xx answers wrk counted (peak run)")
    report.line()
    report.table(
        ["endpoint", "wrk 2xx", "rows stored", "difference"],
        [
            [name, f"{ok:,}", f"{rows:,}", f"{rows - ok:+,}"]
            for s in (*servers, bare)
            for name, (ok, rows) in s.rows.items()
        ],
    )
    report.line(
        "A few more rows than 2xx are expected: requests in flight when wrk stops are "
        "committed but not counted by wrk."
    )
    for run in runs:
        report.line(f"{run.server.name}: exit code on SIGTERM: {run.exit_code}")
    report.line()
    for s in servers:
        if s.log_tail:
            report.line(f"Some requests failed; the end of the {s.name} log:")
            report.line()
            report.line(f"```\n{s.log_tail}\n```")
            report.line()


def server_list(value: str) -> list[str]:
    servers = value.split(",")
    if not servers or not set(servers) <= {"uvicorn", "granian"}:
        raise ValueError(value)
    return servers


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=15, help="seconds per load run (15)")
    parser.add_argument("--warmup", type=int, default=3, help="seconds of warm-up per endpoint")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--api-workers", type=int, default=2, help="also load odiseo api with API_WORKERS=N (2)"
    )
    parser.add_argument(
        "--profile", type=int, default=0, help="py-spy record odiseo api for this many s"
    )
    parser.add_argument("--py-spy", default=None, help="path to py-spy (else PATH or venv)")
    parser.add_argument(
        "--odiseo",
        default=None,
        help="the odiseo executable to load (default: this venv's), e.g. another "
        "worktree's, to compare two versions in one sitting",
    )
    parser.add_argument(
        "--servers",
        type=server_list,
        default=["uvicorn"],
        help="HTTP servers to load odiseo's app under, in this order: uvicorn (odiseo api) "
        "and/or granian (default: uvicorn)",
    )
    parser.add_argument(
        "--no-store-only",
        dest="store_only",
        action="store_false",
        help="skip part 4 (the store alone, in-process)",
    )
    return parser.parse_args(argv)


if __name__ == "__main__":
    exit_cleanly_on_sigterm()
    asyncio.run(main(parse_args()))
