"""End-to-end latency: POST /emails -> the message arrives at an SMTP server, at a steady rate.

    .venv/bin/python bench/latency.py [--rate 1000] [--duration 30] [--modes run,split]

A minimal SMTP server in a process of its own (bench/smtp_recorder.py) notes when each
message arrives, keyed by its Message-ID. A bounded open-loop generator
(bench/openloop.py) POSTs at a fixed rate; latency = arrival - the moment the POST was
sent, matched through `message_id` -> `Message-ID: <message_id@odiseo.io>` (both times
are CLOCK_MONOTONIC, one clock for every process of the machine).

Modes: `run` is `odiseo run` (API + worker in one process); `split` is `odiseo api`
plus `odiseo worker`. Baseline, same run: the same messages sent straight to the
same SMTP server with aiosmtplib over one connection, at the same rate (no HTTP, no queue).

Whether each path held the rate is part of the report: the rate it achieved, the
requests the generator skipped (more than 256 outstanding) or left unanswered, and
its lag behind its schedule. A path that did not hold the rate is marked so in the
table and named below it: its latencies are those of a lower rate than asked.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiosmtplib
from common import (
    MemorySampler,
    Processes,
    Report,
    bench_schema,
    cpu_seconds,
    email_json,
    exit_cleanly_on_sigterm,
    free_port,
    message_bytes,
    mib,
    new_email,
    odiseo_env,
    percentile,
    poll,
    smtp_env,
    wait_http_ok,
)
from openloop import Result, Sample, client_for, open_loop

HELD = 0.98  # a path held the rate if it sent at least this share of it, skipping none
MAX_LAG = 0.005  # ... and sent 99 % of its requests within 5 ms of their due time
RECORDER = Path(__file__).with_name("smtp_recorder.py")


class ArrivalRecorder:
    """bench/smtp_recorder.py in its own process: when each message arrived, by the local
    part of its Message-ID, read from the process's output by a thread."""

    def __init__(self, procs: Processes, port: int) -> None:
        self.arrivals: dict[str, float] = {}
        self.unmatched = 0
        self.cpu_seconds: float | None = None
        self.lock = threading.Lock()
        self.ready = threading.Event()
        self.popen = subprocess.Popen(
            [sys.executable, str(RECORDER), str(port)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
        )
        procs.running.append(self.popen)  # stopped with the others, also on errors
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        if not self.ready.wait(30):
            raise RuntimeError("bench/smtp_recorder.py did not start")

    def _read(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            name, _, value = line.decode().strip().partition(" ")
            if name == "ready":
                self.ready.set()
            elif name == "cpu":
                self.cpu_seconds = float(value)
            elif name == "-":
                with self.lock:
                    self.unmatched += 1
            elif value:
                with self.lock:
                    self.arrivals.setdefault(name, float(value))

    def stop(self) -> None:
        """SIGTERM; the recorder reports its own CPU time on the way out."""
        self.popen.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(10)
        self.reader.join(5)

    def count(self) -> int:
        with self.lock:
            return len(self.arrivals)


@dataclass
class Outcome:
    name: str
    sent: int = 0
    accepted: int = 0
    latencies: list[float] = field(default_factory=list)
    sent_times: list[float] = field(default_factory=list)  # parallel to latencies
    post_seconds: list[float] = field(default_factory=list)
    missing: int = 0
    achieved_rate: float = 0.0
    target_rate: float = 0.0
    skipped: int = 0  # due while 256 requests were outstanding: never sent
    failed: int = 0  # answered with an error, or not at all (timeouts, unfinished)
    # sent - due of every request: the generator's own delay, and waits for a connection
    # that the server has not answered yet (at most 256 outstanding, then skipped)
    lags: list[float] = field(default_factory=list)
    generator_cpu: float = 0.0  # the generator's CPU per request, seconds
    peak_kib: dict[str, int] = field(default_factory=dict)
    cpu_seconds: float = 0.0  # odiseo processes' CPU during the timed run

    @property
    def lag_p99(self) -> float:
        return percentile(self.lags, 99) if self.lags else 0.0

    def problems(self) -> list[str]:
        """Why this path did not hold the rate asked for ([] when it did)."""
        found = []
        if self.achieved_rate < HELD * self.target_rate:
            found.append(f"sent {self.achieved_rate:.0f}/s of the {self.target_rate:.0f}/s asked")
        if self.skipped:
            found.append(f"{self.skipped:,} requests skipped (256 outstanding)")
        if self.failed:
            found.append(f"{self.failed:,} requests failed or unanswered")
        if self.lag_p99 > MAX_LAG:
            found.append(f"send lag p99 {self.lag_p99 * 1000:.1f} ms behind the schedule")
        if self.missing:
            found.append(f"{self.missing:,} accepted messages never arrived")
        return found

    def row(self) -> list[object]:
        def ms(values: list[float], pct: float | None) -> str:
            if not values:
                return "n/a"
            value = max(values) if pct is None else percentile(values, pct)
            return f"{value * 1000:.1f} ms"

        return [
            self.name,
            f"{self.achieved_rate:.1f}",
            "no" if self.problems() else "yes",
            f"{self.lag_p99 * 1000:.2f} ms",
            f"{self.generator_cpu * 1e6:.0f} µs" if self.generator_cpu else "-",
            f"{self.accepted:,}",
            f"{len(self.latencies):,}",
            self.missing,
            ms(self.latencies, 50),
            ms(self.latencies, 99),
            ms(self.latencies, None),
            ms(self.post_seconds, 50),
            ms(self.post_seconds, 99),
            f"{1000 * self.cpu_seconds / self.accepted:.1f} ms" if self.cpu_seconds else "-",
            ", ".join(f"{k} {mib(v)}" for k, v in self.peak_kib.items()) or "-",
        ]

    def windows(self, seconds: float) -> list[str]:
        """p50 / p99 of the messages sent in each `seconds`-long window of the run."""
        if not self.sent_times:
            return []
        start = min(self.sent_times)
        buckets: dict[int, list[float]] = {}
        for sent, latency in zip(self.sent_times, self.latencies, strict=True):
            buckets.setdefault(int((sent - start) // seconds), []).append(latency)
        return [
            f"{percentile(v, 50) * 1000:.0f} / {percentile(v, 99) * 1000:.0f}"
            for _, v in sorted(buckets.items())
        ]


async def wait_for_arrivals(recorder: ArrivalRecorder, expected: int, timeout: float) -> None:
    await poll(lambda: recorder.count() >= expected, timeout=timeout)


async def through_odiseo(
    procs: Processes,
    recorder: ArrivalRecorder,
    smtp_port: int,
    *,
    mode: str,
    args: argparse.Namespace,
) -> Outcome:
    outcome = Outcome(name=f"odiseo {'run' if mode == 'run' else 'api + worker'}")
    async with bench_schema() as schema:
        port = free_port()
        extra = {"API_PORT": str(port)}
        if args.poll_interval is not None:
            extra["EMAIL_WORKER_POLL_INTERVAL"] = str(args.poll_interval)
        env = odiseo_env(schema, **smtp_env(smtp_port), **extra)
        started: list[tuple[str, subprocess.Popen[bytes]]] = []
        try:
            base = f"http://127.0.0.1:{port}"
            start_odiseo(procs, started, env, mode=mode, base=base)
            samplers = {name: MemorySampler(p.pid).start() for name, p in started}

            def cpu() -> float:
                return sum(cpu_seconds(p.pid) for _, p in started)

            result, cpu_before = await post_at_rate(f"{base}/emails", recorder, args, cpu=cpu)
            outcome.sent = len(result.samples)
            outcome.achieved_rate = result.achieved_rate
            outcome.target_rate = args.rate
            outcome.skipped = result.skipped
            outcome.failed = result.failed + result.unfinished
            outcome.lags = result.lags()
            outcome.generator_cpu = result.cpu_per_request()
            accepted: list[Sample] = [s for s in result.ok if isinstance(s.answer, dict)]
            outcome.accepted = len(accepted)
            ids = {s.answer["message_id"]: s for s in accepted}
            await poll(lambda: all(i in recorder.arrivals for i in ids), timeout=args.drain)
            outcome.cpu_seconds = cpu() - cpu_before
            record_latencies(outcome, recorder, {i: s.sent for i, s in ids.items()})
            outcome.post_seconds = [s.service for s in accepted]
            outcome.peak_kib = {name: s.stop() for name, s in samplers.items()}
        finally:
            for _, popen in reversed(started):
                procs.stop(popen)
    return outcome


def start_odiseo(
    procs: Processes,
    started: list[tuple[str, subprocess.Popen[bytes]]],
    env: dict[str, str],
    *,
    mode: str,
    base: str,
) -> None:
    """`odiseo run`, or `odiseo api` then `odiseo worker`; each appended to `started`."""
    if mode == "run":
        started.append(("run", procs.odiseo("run", ["run"], env)))
    else:
        started.append(("api", procs.odiseo("api", ["api"], env)))
    wait_http_ok(f"{base}/health", process=started[0][1], timeout=60)
    if mode == "split":
        started.append(("worker", procs.odiseo("worker", ["worker"], env)))


async def post_at_rate(
    url: str, recorder: ArrivalRecorder, args: argparse.Namespace, *, cpu: Callable[[], float]
) -> tuple[Result, float]:
    """A warm-up through the whole path (not counted), then POSTs at --rate for --duration;
    the measured run's result, and `cpu()` just before it began."""
    payloads = [json.dumps(email_json(n)).encode() for n in range(args.warmup)]
    async with client_for(64) as client:
        warm = await open_loop(
            client,
            url,
            rate=10,
            duration=args.warmup / 10,
            body=lambda i: payloads[i % len(payloads)],
        )
        await wait_for_arrivals(recorder, recorder.count() + len(warm.ok), 30)
        payload = json.dumps(email_json(1)).encode()
        cpu_before = cpu()
        result = await open_loop(
            client,
            url,
            rate=args.rate,
            duration=args.duration,
            body=lambda _: payload,
            max_in_flight=256,
            keep_answers=True,
        )
    return result, cpu_before


def record_latencies(
    outcome: Outcome, recorder: ArrivalRecorder, sent_at: dict[str, float]
) -> None:
    """Latency of each message sent at `sent_at[message_id]` that arrived; the rest missing."""
    with recorder.lock:
        arrivals = dict(recorder.arrivals)
    for message_id, sent in sent_at.items():
        if message_id in arrivals:
            outcome.latencies.append(arrivals[message_id] - sent)
            outcome.sent_times.append(sent)
        else:
            outcome.missing += 1


async def direct_smtp(
    recorder: ArrivalRecorder, smtp_port: int, args: argparse.Namespace
) -> Outcome:
    """The floor: build and send the same kind of message over one connection, same rate."""
    outcome = Outcome(name="baseline: aiosmtplib, no HTTP/queue", target_rate=args.rate)
    client = aiosmtplib.SMTP(hostname="127.0.0.1", port=smtp_port, start_tls=False)
    await client.connect()
    lock = asyncio.Lock()
    sent_at: dict[str, float] = {}
    total = int(args.rate * args.duration)
    tasks: list[asyncio.Task[Any]] = []

    async def send(index: int) -> None:
        email = new_email(index).email
        sent_at[email.message_id] = time.monotonic()
        async with lock:  # one connection, one message at a time, like a worker
            data = message_bytes(email, date=dt.datetime.now(dt.UTC))
            await client.sendmail(email.from_email, list(email.recipients), data)

    try:
        start = time.monotonic()
        for index in range(total):
            due = start + index / args.rate
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            outcome.lags.append(time.monotonic() - due)
            tasks.append(asyncio.ensure_future(send(index)))
        await asyncio.wait_for(asyncio.gather(*tasks), args.drain)
        outcome.achieved_rate = (total - 1) / (max(sent_at.values()) - min(sent_at.values()))
    finally:
        for task in tasks:
            task.cancel()
        with contextlib.suppress(Exception):
            await client.quit()
    await poll(lambda: all(i in recorder.arrivals for i in sent_at), timeout=10)
    outcome.sent = outcome.accepted = len(sent_at)
    record_latencies(outcome, recorder, sent_at)
    return outcome


async def main(args: argparse.Namespace) -> None:
    modes = args.modes.split(",")
    report = Report("latency")
    report.header(
        "End-to-end latency: POST /emails -> SMTP arrival",
        {
            "rate": f"{args.rate} emails/s (open loop)",
            "duration": f"{args.duration} s per mode",
            "modes": args.modes,
            "SMTP server": "bench/smtp_recorder.py, a process of its own",
            "EMAIL_WORKER_POLL_INTERVAL": args.poll_interval or "default (10 s; NOTIFY wakes)",
        },
    )
    smtp_port = free_port()
    outcomes = []
    with Processes() as procs:
        recorder = ArrivalRecorder(procs, smtp_port)
        try:
            for mode in modes:
                outcomes.append(
                    await through_odiseo(procs, recorder, smtp_port, mode=mode, args=args)
                )
            outcomes.append(await direct_smtp(recorder, smtp_port, args))
        finally:
            recorder.stop()
    report_outcomes(report, outcomes, recorder=recorder)
    report.save()


def report_outcomes(report: Report, outcomes: list[Outcome], *, recorder: ArrivalRecorder) -> None:
    report.table(
        ["path", "sent/s", "rate held", "send lag p99", "generator CPU/req", "accepted",
         "arrived", "missing", "p50", "p99", "max", "POST p50", "POST p99",
         "odiseo CPU per email", "peak RSS"],
        [o.row() for o in outcomes],
    )  # fmt: skip
    window = 5.0
    series = [o.windows(window) for o in outcomes]
    width = max(len(w) for w in series)
    report.line(f"Latency p50 / p99 in ms, by {window:.0f} s window of sending time:")
    report.line()
    report.table(
        ["path", *(f"{window * i:.0f}-{window * (i + 1):.0f} s" for i in range(width))],
        [[o.name, *w, *[""] * (width - len(w))] for o, w in zip(outcomes, series, strict=True)],
    )
    report.line(
        "Latency = arrival at the SMTP server - the moment the POST was sent (baseline: the "
        "moment the send began, including building the message); both CLOCK_MONOTONIC."
    )
    report.line()
    for outcome in outcomes:
        if problems := outcome.problems():
            report.line(
                f"**{outcome.name} did not hold {outcome.target_rate:.0f}/s**: "
                f"{'; '.join(problems)}. Its latencies are not those of the rate asked for."
            )
            report.line()
    if recorder.cpu_seconds is not None:
        arrived = recorder.count() + recorder.unmatched
        report.line(
            f"The SMTP recorder's CPU: {recorder.cpu_seconds * 1e6 / max(arrived, 1):.0f} µs "
            f"per message ({arrived:,} messages, warm-ups included)."
        )
    if recorder.unmatched:
        report.line(f"{recorder.unmatched} message(s) arrived without a readable Message-ID.")
    report.line()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=1000.0, help="emails per second (1000)")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds per mode (30)")
    parser.add_argument("--modes", default="run,split", help="run, split or run,split")
    parser.add_argument("--warmup", type=int, default=20, help="warm-up messages per mode")
    parser.add_argument("--drain", type=float, default=60.0, help="max wait for arrivals (s)")
    parser.add_argument(
        "--poll-interval", type=float, default=None, help="EMAIL_WORKER_POLL_INTERVAL"
    )
    return parser.parse_args(argv)


if __name__ == "__main__":
    exit_cleanly_on_sigterm()
    asyncio.run(main(parse_args()))
