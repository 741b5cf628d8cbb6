"""Delivery throughput: `odiseo worker` processes draining a queue into Postfix's smtp-sink.

    .venv/bin/python bench/delivery.py [--count 20000] [--workers 1,2] [--dkim-workers 1]
                                       [--pool-size N] [--profile 10]

For each worker count: a fresh schema, COUNT messages stored straight through
PostgresStore.enqueue (500 per transaction), then the workers are started and
timed until SQL counts show every message sent; for the counts in --dkim-workers,
the same again right after with DKIM signing on (an RSA-2048 key made for the run).
Baseline in the same run: smtp-source into the same sink, aiosmtplib sending the
same bytes with no queue, and the CPU of one DKIM signature (odiseo's signer, plain
dkimpy, and the bare RSA signature by `cryptography`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import os
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiosmtplib
import asyncpg
import dkim
from common import (
    DATABASE_URL,
    SMTP_SINK,
    SMTP_SOURCE,
    MemorySampler,
    Processes,
    Report,
    SmtpSink,
    bench_schema,
    enqueue_many,
    exit_cleanly_on_sigterm,
    message_bytes,
    mib,
    migrated_store,
    new_email,
    odiseo_env,
    rate,
    require_tools,
    smtp_env,
    smtp_source,
    status_counts,
    tree_cpu_seconds,
)
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from profiling import PySpy, find_py_spy

from odiseo.dkim_signing import DkimSigner

POLL_SECONDS = 0.1
DKIM_DOMAIN = "odiseo.io"
DKIM_SELECTOR = "bench"


@dataclass
class Run:
    workers: int
    count: int
    enqueue_seconds: float
    dkim: bool = False
    spawn_to_done: float = 0.0
    first_to_done: float = 0.0
    sent_at_first: int = 0
    sink_messages: int = 0
    cpu_seconds: float = 0.0  # the workers' CPU (and their signing process's), first to last sent
    peaks_kib: list[int] = field(default_factory=list)
    exit_codes: list[int | None] = field(default_factory=list)
    other_statuses: dict[str, int] = field(default_factory=dict)
    profile: PySpy | None = None

    @property
    def rate_from_spawn(self) -> float:
        return self.count / self.spawn_to_done

    @property
    def steady_rate(self) -> float:
        return (self.count - self.sent_at_first) / self.first_to_done


async def drain(
    procs: Processes,
    sink: SmtpSink,
    *,
    workers: int,
    count: int,
    args: argparse.Namespace,
    py_spy: str | None,
    dkim_key: Path | None = None,
) -> Run:
    """Enqueue `count` messages in a fresh schema, then time `workers` workers draining them.

    With `dkim_key` (a PEM file) the workers sign every message with it.
    """
    async with bench_schema() as schema:
        async with migrated_store(schema) as store:
            run = Run(
                workers=workers,
                count=count,
                enqueue_seconds=await enqueue_many(store, count),
                dkim=dkim_key is not None,
            )
        env = worker_env(schema, sink.port, args=args, dkim_key=dkim_key)
        conn = await asyncpg.connect(DATABASE_URL, timeout=10)
        sink_before = sink.messages()
        popens: list[subprocess.Popen[bytes]] = []
        samplers: list[MemorySampler] = []
        try:
            began = time.perf_counter()
            for i in range(workers):
                popens.append(procs.odiseo(f"worker-{workers}-{i}", ["worker"], env))
                samplers.append(MemorySampler(popens[-1].pid).start())
            watch = Watch(procs=procs, conn=conn, schema=schema, popens=popens, began=began)
            await watch.until_sent(run, args=args, py_spy=py_spy)
            run.peaks_kib = [sampler.stop() for sampler in samplers]
        finally:
            for sampler in samplers:
                sampler.stop()
            if run.profile is not None:
                run.profile.finish()
            run.exit_codes = [procs.stop(popen) for popen in popens]
            await conn.close()
        await asyncio.sleep(0.3)  # the sink's counter is written as sessions end
        run.sink_messages = sink.messages() - sink_before
        return run


def worker_env(
    schema: str, port: int, *, args: argparse.Namespace, dkim_key: Path | None
) -> dict[str, str]:
    """The environment of the run's `odiseo worker` processes."""
    extra = {"EMAIL_WORKER_POLL_INTERVAL": str(args.poll_interval)}
    if args.batch_size:
        extra["EMAIL_WORKER_BATCH_SIZE"] = str(args.batch_size)
    if args.pool_size:
        extra["SMTP_POOL_SIZE"] = str(args.pool_size)
    if dkim_key is not None:
        extra.update(
            DKIM_DOMAIN=DKIM_DOMAIN, DKIM_SELECTOR=DKIM_SELECTOR, DKIM_PRIVATE_KEY=str(dkim_key)
        )
    return odiseo_env(schema, **smtp_env(port), **extra)


@dataclass(kw_only=True)
class Watch:
    """The queue of one run, polled until every message is sent."""

    procs: Processes
    conn: asyncpg.Connection
    schema: str
    popens: list[subprocess.Popen[bytes]]
    began: float

    async def until_sent(self, run: Run, *, args: argparse.Namespace, py_spy: str | None) -> None:
        """Poll until all are sent; the steady rate counts from the first one sent, whose
        moment also starts the worker CPU count and the py-spy recording."""
        first: float | None = None
        cpu_at_first = 0.0
        while True:
            counts = await status_counts(self.conn, self.schema)
            now = time.perf_counter()
            sent = counts.get("sent", 0)
            if sent and first is None:
                first, run.sent_at_first = now, sent
                cpu_at_first = self.cpu_seconds()
                if py_spy and args.profile:
                    run.profile = self.record(py_spy, seconds=args.profile, dkim=run.dkim)
            if sent >= run.count:
                break
            self.check(counts, now=now, timeout=args.timeout)
            await asyncio.sleep(POLL_SECONDS)
        run.cpu_seconds = self.cpu_seconds() - cpu_at_first
        run.spawn_to_done = now - self.began
        run.first_to_done = now - (first or self.began)
        run.other_statuses = {k: v for k, v in counts.items() if k != "sent"}

    def cpu_seconds(self) -> float:
        return sum(tree_cpu_seconds(p.pid) for p in self.popens)

    def record(self, py_spy: str, *, seconds: int, dkim: bool) -> PySpy:
        name = f"delivery-worker-{'dkim-' if dkim else ''}{self.schema}"
        return PySpy(self.procs, py_spy, pid=self.popens[0].pid, seconds=seconds, name=name)

    def check(self, counts: dict[str, int], *, now: float, timeout: float) -> None:
        """Stop the run when a worker died, mail fails, or it takes too long."""
        for popen in self.popens:
            if popen.poll() is not None:
                raise RuntimeError(f"a worker exited early:\n{self.procs.log_tail(popen)}")
        if counts.get("failed") or counts.get("scheduled"):
            raise RuntimeError(f"deliveries are failing: {counts}")
        if now - self.began > timeout:
            raise TimeoutError(f"not all sent after {timeout} s: {counts}")


async def aiosmtplib_baseline(port: int, count: int) -> tuple[float, int]:
    """Send `count` copies of an odiseo-built message over one aiosmtplib connection."""
    data = message_bytes(new_email(1).email, date=dt.datetime.now(dt.UTC))
    client = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False, use_tls=False)
    await client.connect()
    try:
        began = time.perf_counter()
        for _ in range(count):
            await client.sendmail("noreply@odiseo.io", ["customer1@example.com"], data)
        return time.perf_counter() - began, len(data)
    finally:
        with contextlib.suppress(Exception):
            await client.quit()


def rsa_pem(bits: int = 2048) -> bytes:
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )


def signing_baseline(pem: bytes, count: int) -> list[tuple[str, float]]:
    """CPU ms per signature of the bench message: odiseo's signer, plain dkimpy, bare RSA."""
    data = message_bytes(new_email(1).email, date=dt.datetime.now(dt.UTC))
    signer = DkimSigner(domain=DKIM_DOMAIN, selector=DKIM_SELECTOR, private_key=pem)
    key = serialization.load_pem_private_key(pem, password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    cases: list[tuple[str, Callable[[], object]]] = [
        ("odiseo.dkim_signing.DkimSigner.sign (the worker's signer)", lambda: signer.sign(data)),
        (
            "dkimpy dkim.sign, pure-Python RSA (the signer before 2026-12-01)",
            lambda: dkim.sign(
                data,
                DKIM_SELECTOR.encode(),
                DKIM_DOMAIN.encode(),
                pem,
                include_headers=[b"from", b"to", b"subject", b"date", b"message-id"],
                canonicalize=(b"relaxed", b"relaxed"),
            ),
        ),
        (
            "cryptography RSA-2048 PKCS#1 v1.5 signature of a SHA-256 digest alone",
            lambda: key.sign(data[:32], padding.PKCS1v15(), hashes.SHA256()),
        ),
    ]
    results = []
    for name, sign in cases:
        runs = count if "dkimpy" not in name else max(1, count // 10)
        began = time.process_time()
        for _ in range(runs):
            sign()
        results.append((name, 1000 * (time.process_time() - began) / runs))
    return results


def build_baseline(count: int) -> float:
    """Seconds to build `count` messages as the worker does (build_message to bytes), no I/O."""
    emails = [new_email(n).email for n in range(count)]
    now = dt.datetime.now(dt.UTC)
    began = time.perf_counter()
    for email in emails:
        message_bytes(email, date=now)
    return time.perf_counter() - began


async def all_runs(
    procs: Processes, sink: SmtpSink, *, args: argparse.Namespace, py_spy: str | None, pem: bytes
) -> list[Run]:
    """One DKIM-off run per worker count, each followed by its DKIM-on run when asked."""
    workers = [int(n) for n in args.workers.split(",")]
    signed = {int(n) for n in args.dkim_workers.split(",") if n.strip()}
    runs = []
    with tempfile.TemporaryDirectory(prefix="odiseo-bench-") as tmp:
        key_file = Path(tmp) / "dkim.pem"
        key_file.write_bytes(pem)
        for n in workers:
            for key in (None, key_file) if n in signed else (None,):
                spy = py_spy if n == workers[0] else None
                runs.append(
                    await drain(
                        procs, sink, workers=n, count=args.count, args=args, py_spy=spy,
                        dkim_key=key,
                    )
                )  # fmt: skip
    return runs


@dataclass(kw_only=True)
class Baselines:
    """What the same machine does without odiseo, measured in the same run."""

    count: int  # messages per smtp-source run
    source_16: float  # seconds, 16 sessions
    source_1: float  # seconds, one reused connection
    py_count: int
    py_seconds: float  # aiosmtplib, one connection
    message_bytes: int
    build_count: int
    build_seconds: float  # build_message() alone
    signatures: list[tuple[str, float]]  # CPU ms per DKIM signature


async def measure_baselines(sink: SmtpSink, *, count: int, pem: bytes) -> Baselines:
    source_16, _ = smtp_source(sink.port, count=count, sessions=16)
    source_1, _ = smtp_source(sink.port, count=count, sessions=1, reuse=True)
    py_count = min(count, 5000)
    py_seconds, size = await aiosmtplib_baseline(sink.port, py_count)
    build_count = min(count, 2000)
    build_seconds = build_baseline(build_count)
    return Baselines(
        count=count,
        source_16=source_16,
        source_1=source_1,
        py_count=py_count,
        py_seconds=py_seconds,
        message_bytes=size,
        build_count=build_count,
        build_seconds=build_seconds,
        signatures=signing_baseline(pem, min(count, 2000)),
    )


async def main(args: argparse.Namespace) -> None:
    require_tools(SMTP_SINK, SMTP_SOURCE)
    py_spy = find_py_spy(args.py_spy) if args.profile else None
    report = Report("delivery")
    report.header(
        "Delivery: odiseo worker -> smtp-sink",
        {
            "emails per run": f"{args.count:,}",
            "workers": args.workers,
            "EMAIL_WORKER_POLL_INTERVAL": args.poll_interval,
            "EMAIL_WORKER_BATCH_SIZE": args.batch_size or "default (50)",
            "SMTP_POOL_SIZE": args.pool_size or "default",
            "DKIM-on runs (RSA-2048) for workers": args.dkim_workers or "none",
            "profile": f"py-spy {args.profile} s on the 1-worker run" if py_spy else "off",
        },
    )
    if args.profile and not py_spy:
        report.line("(py-spy not found: pass --py-spy PATH; profiling skipped)\n")
    pem = rsa_pem()
    with Processes() as procs:
        sink = SmtpSink(procs)
        runs = await all_runs(procs, sink, args=args, py_spy=py_spy, pem=pem)
        baselines = await measure_baselines(sink, count=args.count, pem=pem)
        sink.stop()
    report_runs(report, runs)
    dkim_ratios(report, runs)
    report_baselines(report, runs, baselines)
    for r in runs:
        if r.profile is not None:
            r.profile.report(report, f"the {r.workers}-worker run, while delivering")
    report.save()


def report_runs(report: Report, runs: list[Run]) -> None:
    report.line("### odiseo worker")
    report.line()
    report.table(
        [
            "workers",
            "DKIM",
            "emails",
            "spawn -> all sent",
            "emails/s (from spawn)",
            "emails/s (first -> last sent)",
            "smtp-sink got",
            "worker CPU per email (+ its DKIM signing process)",
            "peak RSS per worker (VmHWM)",
            "exit codes",
        ],
        [
            [
                r.workers,
                "RSA-2048" if r.dkim else "off",
                f"{r.count:,}",
                f"{r.spawn_to_done:.1f} s",
                rate(r.rate_from_spawn),
                rate(r.steady_rate),
                f"{r.sink_messages:,}",
                f"{1000 * r.cpu_seconds / max(1, r.count - r.sent_at_first):.2f} ms",
                ", ".join(mib(p) for p in r.peaks_kib),
                ", ".join(str(c) for c in r.exit_codes),
            ]
            for r in runs
        ],
    )
    report.line(
        f"Enqueue (not timed above): {', '.join(rate(r.count / r.enqueue_seconds) for r in runs)}"
        " emails/s through PostgresStore.enqueue, 500 per transaction."
    )
    report.line()


def report_baselines(report: Report, runs: list[Run], b: Baselines) -> None:
    report.line("### Baseline, same run, same smtp-sink")
    report.line()
    rows: list[tuple[str, int, float]] = [
        ("smtp-source -s 16 -l 2000 (new connection per message)", b.count, b.source_16),
        ("smtp-source -s 1 -d -l 2000 (one connection, like one worker)", b.count, b.source_1),
        (
            f"aiosmtplib, one connection, the odiseo-built message ({b.message_bytes:,} B)",
            b.py_count,
            b.py_seconds,
        ),
        (
            "odiseo.mime.build_message() to bytes only, no I/O (CPU per message)",
            b.build_count,
            b.build_seconds,
        ),
    ]
    report.table(
        ["baseline", "messages", "time", "msgs/s"],
        [[name, f"{n:,}", f"{seconds:.1f} s", rate(n / seconds)] for name, n, seconds in rows],
    )
    best = max(r.steady_rate for r in runs)
    report.line(
        f"Best odiseo steady rate = {100 * best / (b.count / b.source_1):.1f} % of "
        f"smtp-source on one connection, {100 * best / (b.py_count / b.py_seconds):.1f} % of "
        "aiosmtplib without a queue."
    )
    report.line()
    report.table(
        ["one DKIM signature of the bench message, in this process", "CPU per signature"],
        [[name, f"{cpu_ms:.3f} ms"] for name, cpu_ms in b.signatures],
    )


def dkim_ratios(report: Report, runs: list[Run]) -> None:
    """DKIM-on steady rate as a share of the DKIM-off run with the same worker count."""
    off = {r.workers: r for r in runs if not r.dkim}
    for r in runs:
        if r.dkim and r.workers in off:
            base = off[r.workers]
            extra_cpu = r.cpu_seconds / max(1, r.count - r.sent_at_first) - (
                base.cpu_seconds / max(1, base.count - base.sent_at_first)
            )
            report.line(
                f"DKIM on, {r.workers} worker(s): {100 * r.steady_rate / base.steady_rate:.1f} % "
                f"of the DKIM-off rate ({rate(r.steady_rate)} vs {rate(base.steady_rate)} "
                f"emails/s), {1000 * extra_cpu:+.2f} ms of worker CPU per email (its signing "
                "process included)."
            )
            report.line()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=20_000, help="emails per run (20000)")
    parser.add_argument("--workers", default="1,2", help="worker counts to run, e.g. 1,2")
    parser.add_argument(
        "--dkim-workers",
        default="1",
        help="worker counts that also get a DKIM-on run (RSA-2048), e.g. 1,2; '' for none",
    )
    parser.add_argument("--poll-interval", type=float, default=0.2)
    parser.add_argument("--batch-size", type=int, default=None, help="EMAIL_WORKER_BATCH_SIZE")
    parser.add_argument("--pool-size", type=int, default=None, help="SMTP_POOL_SIZE")
    parser.add_argument("--timeout", type=float, default=600, help="give up on a run after (s)")
    parser.add_argument(
        "--profile", type=int, default=0, help="py-spy record the first run for this many s"
    )
    parser.add_argument("--py-spy", default=None, help="path to py-spy (else PATH or venv)")
    return parser.parse_args(argv)


if __name__ == "__main__":
    exit_cleanly_on_sigterm()
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    asyncio.run(main(parse_args()))
