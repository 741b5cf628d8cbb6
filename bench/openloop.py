"""A bounded open-loop HTTP load generator (asyncio + httpx): a fixed request rate.

    .venv/bin/python bench/openloop.py URL --rate 200 --duration 15 [--body-file body.json]

wrk keeps N connections busy (closed loop) and cannot hold a fixed rate; this sends
request i at t0 + i/rate whether or not earlier ones have answered, so a slow server
meets a growing backlog instead of a politely waiting client. Latency is measured
from the moment a request was due (so time spent queued behind the generator itself
counts too); `service` is from when it was actually sent. At most `max_in_flight`
requests are outstanding: beyond that a due request is skipped and counted, never
queued without bound. The whole run ends at most `drain` seconds after the last send.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx


@dataclass
class Sample:
    index: int
    due: float  # time.monotonic() at which the request was due
    sent: float  # when it was actually handed to httpx
    done: float = 0.0
    status: int | None = None
    error: str | None = None
    answer: Any = None  # the JSON answer, when asked to keep it

    @property
    def succeeded(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    @property
    def latency(self) -> float:
        return self.done - self.due

    @property
    def service(self) -> float:
        return self.done - self.sent


@dataclass
class Result:
    rate: float
    duration: float
    samples: list[Sample] = field(default_factory=list)
    skipped: int = 0  # due while max_in_flight were outstanding
    unfinished: int = 0  # still outstanding after the drain time
    elapsed: float = 0.0  # first due -> last answer

    @property
    def ok(self) -> list[Sample]:
        return [s for s in self.samples if s.succeeded]

    @property
    def failed(self) -> int:
        return len(self.samples) - len(self.ok)

    @property
    def achieved_rate(self) -> float:
        """Requests actually sent per second over the sending window."""
        sent = [s.sent for s in self.samples]
        if len(sent) < 2:
            return 0.0
        return (len(sent) - 1) / (max(sent) - min(sent))

    def failures(self) -> str:
        """What went wrong, e.g. `2 x 503, 1 x ReadTimeout` ("" when nothing did)."""
        kinds = collections.Counter(
            s.error or str(s.status) for s in self.samples if not s.succeeded
        )
        return ", ".join(f"{n} x {kind}" for kind, n in kinds.most_common())

    def max_lag(self) -> float:
        """How far behind its schedule the generator sent its latest request."""
        return max((s.sent - s.due for s in self.samples), default=0.0)


async def open_loop(
    client: httpx.AsyncClient,
    url: str,
    *,
    rate: float,
    duration: float,
    body: Callable[[int], bytes],
    headers: dict[str, str] | None = None,
    max_in_flight: int = 256,
    drain: float = 30.0,
    keep_answers: bool = False,
    on_answer: Callable[[Sample], None] | None = None,
) -> Result:
    """POST `body(i)` to `url` at `rate` per second for `duration` seconds."""
    result = Result(rate=rate, duration=duration)
    headers = {"Content-Type": "application/json", **(headers or {})}
    pending: set[asyncio.Task[None]] = set()
    total = int(rate * duration)

    async def send(sample: Sample, payload: bytes) -> None:
        try:
            response = await client.post(url, content=payload, headers=headers)
            sample.status = response.status_code
            if keep_answers:
                with contextlib.suppress(ValueError):
                    sample.answer = response.json()
        except httpx.HTTPError as exc:
            sample.error = type(exc).__name__
        finally:
            sample.done = time.monotonic()
        if on_answer is not None:
            on_answer(sample)

    start = time.monotonic() + 0.05
    for index in range(total):
        due = start + index / rate
        wait = due - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        if len(pending) >= max_in_flight:
            result.skipped += 1
            continue
        payload = body(index)
        sample = Sample(index=index, due=due, sent=time.monotonic())
        result.samples.append(sample)
        task = asyncio.ensure_future(send(sample, payload))
        pending.add(task)
        task.add_done_callback(pending.discard)
    if pending:
        _, late = await asyncio.wait(pending, timeout=drain)
        result.unfinished = len(late)
        for task in late:
            task.cancel()
        await asyncio.gather(*late, return_exceptions=True)
    result.samples = [s for s in result.samples if s.done]
    result.elapsed = max((s.done for s in result.samples), default=start) - start
    return result


def client_for(max_in_flight: int, timeout: float = 30.0) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=max_in_flight, max_keepalive_connections=max_in_flight)
    return httpx.AsyncClient(limits=limits, timeout=timeout)


def summary(result: Result) -> dict[str, Any]:
    from common import percentile

    latencies = [s.latency for s in result.ok]
    return {
        "target_rate": result.rate,
        "achieved_rate": result.achieved_rate,
        "ok": len(result.ok),
        "failed": result.failed,
        "failures": result.failures(),
        "skipped": result.skipped,
        "unfinished": result.unfinished,
        "p50_ms": percentile(latencies, 50) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
        "max_ms": max(latencies, default=float("nan")) * 1000,
        "max_lag_ms": result.max_lag() * 1000,
    }


async def _main(args: argparse.Namespace, payload: bytes) -> None:
    async with client_for(args.max_in_flight) as client:
        result = await open_loop(
            client,
            args.url,
            rate=args.rate,
            duration=args.duration,
            body=lambda _: payload,
            max_in_flight=args.max_in_flight,
        )
    print(json.dumps(summary(result), indent=2))


if __name__ == "__main__":
    from common import email_json

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("url")
    parser.add_argument("--rate", type=float, required=True, help="requests per second")
    parser.add_argument("--duration", type=float, default=15.0, help="seconds of sending (15)")
    parser.add_argument("--body-file", help="JSON body to POST (default: a ~2 KB email)")
    parser.add_argument("--max-in-flight", type=int, default=256)
    arguments = parser.parse_args()
    if arguments.body_file:
        body = Path(arguments.body_file).read_bytes()
    else:
        body = json.dumps(email_json()).encode()
    asyncio.run(_main(arguments, body))
