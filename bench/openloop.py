"""A bounded open-loop HTTP load generator: a fixed request rate, little CPU of its own.

    .venv/bin/python bench/openloop.py URL --rate 200 --duration 15 [--body-file body.json]

wrk keeps N connections busy (closed loop) and cannot hold a fixed rate; this sends
request i at t0 + i/rate whether or not earlier ones have answered, so a slow server
meets a growing backlog instead of a politely waiting client. Latency is measured
from the moment a request was due (so time spent queued behind the generator itself
counts too); `service` is from when it was actually written to its connection. At most
`max_in_flight` requests are outstanding: beyond that a due request is skipped and
counted, never queued without bound. The whole run ends at most `drain` seconds after
the last send.

The generator shares the cores with the server it loads, so it must cost little: a
minimal HTTP/1.1 keep-alive client on raw asyncio (no httpx), with a pool of
persistent connections opened up front (more on demand, up to the client's limit, and
reopened when the server closes one); each request is serialised once and sent with one
transport.write; the answer is parsed only as far as the status line and the body's
length (Content-Length, or chunked). A ticker wakes when the next request is due, but
at most once a millisecond, and sends every request that has become due: one wake-up
per request at low rates, a batch per millisecond at high ones. It wakes on a Linux
timerfd (to the microsecond; asyncio's and uvloop's timers work to the millisecond),
else on asyncio.sleep. The summary reports the generator's lag behind its schedule and
its own CPU time per request. The command line runs on uvloop when it is installed
(as the servers under test do), else on asyncio's loop.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import ctypes
import json
import math
import os
import sys
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

T = TypeVar("T")

TICK = 0.001  # at rates above 1/TICK, wake once per TICK and send everything due
IDLE_REUSE = 4.0  # uvicorn closes keep-alive connections idle for 5 s: don't reuse older ones
SWEEP = 0.25  # how often outstanding requests are checked against the client's timeout


@dataclass(slots=True)
class Sample:
    index: int
    due: float  # time.monotonic() at which the request was due
    sent: float  # when it was written to its connection (handed to the client until then)
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
    unfinished: int = 0  # still outstanding after the drain time (not in `samples`)
    elapsed: float = 0.0  # first due -> last answer
    sent: int = 0  # requests handed to the client (answered, failed or unfinished)
    cpu_seconds: float = 0.0  # this process's CPU (time.process_time) from t0 to the end
    thread_cpu_seconds: float = 0.0  # the same for the generator's thread only
    connections_opened: int = 0  # during the run, beyond the ones opened up front
    loop: str = ""  # the event loop's module: "uvloop" or "asyncio"

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
        if len(sent) < 2 or max(sent) == min(sent):
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

    def lags(self) -> list[float]:
        """sent - due of every request: the generator's share of each latency."""
        return [s.sent - s.due for s in self.samples]

    def cpu_per_request(self) -> float:
        """Seconds of the generator process's CPU per request sent."""
        return self.cpu_seconds / self.sent if self.sent else float("nan")


# -- the HTTP/1.1 client ----------------------------------------------------------------


class _Run:
    """One open_loop call's bookkeeping: what is outstanding, and who hears about answers."""

    __slots__ = ("inflight", "keep_answers", "on_answer", "waiter")

    def __init__(self, keep_answers: bool, on_answer: Callable[[Sample], None] | None) -> None:
        self.inflight = 0
        self.keep_answers = keep_answers
        self.on_answer = on_answer
        self.waiter: asyncio.Future[None] | None = None  # set when the last one answers

    def finished(self, sample: Sample) -> None:
        self.inflight -= 1
        if self.on_answer is not None:
            self.on_answer(sample)
        if self.inflight == 0 and self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    def fail(self, sample: Sample, error: str) -> None:
        sample.error = error
        sample.done = time.monotonic()
        self.finished(sample)


class _Connection(asyncio.Protocol):
    """One keep-alive connection: one request at a time, the answer parsed minimally."""

    __slots__ = (
        "body_start",
        "buffer",
        "chunked",
        "closed",
        "idle_since",
        "length",
        "pool",
        "run",
        "sample",
        "status",
        "transport",
        "will_close",
    )

    def __init__(self, pool: _Pool) -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.run: _Run | None = None
        self.sample: Sample | None = None
        self.buffer = bytearray()
        self.closed = False
        self.idle_since = 0.0
        self._reset()

    def _reset(self) -> None:
        self.status = 0  # 0 until the status line and headers have arrived
        self.body_start = 0
        self.length = -1  # Content-Length; -1 when chunked or until the server closes
        self.chunked = False
        self.will_close = False

    def send(self, run: _Run, sample: Sample, data: bytes) -> None:
        self.run = run
        self.sample = sample
        self.pool.busy.add(self)
        sample.sent = time.monotonic()
        self.transport.write(data)  # type: ignore[union-attr]

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self.sample is None:  # nothing asked: a protocol error or a late answer
            self.abort()
            return
        buffer = self.buffer
        if buffer:
            buffer += data
            data = bytes(buffer)
        if not self.status:
            end = data.find(b"\r\n\r\n")
            if end < 0:
                if not buffer:
                    buffer += data
                return
            if not self._head(data, end):
                return
        if self.length >= 0:
            stop = self.body_start + self.length
            if len(data) < stop:
                if not buffer:
                    buffer += data
                return
            body = data[self.body_start : stop]
        elif self.chunked:
            try:
                parsed = _dechunk(data, self.body_start)
            except ValueError:  # a chunk size that is not hexadecimal
                self._protocol_error()
                return
            if parsed is None:
                if not buffer:
                    buffer += data
                return
            body, stop = parsed
        else:  # the body ends when the server closes the connection
            if not buffer:
                buffer += data
            return
        buffer.clear()
        self._complete(body)

    def _head(self, data: bytes, end: int) -> bool:
        try:
            if not data.startswith(b"HTTP/1."):
                raise ValueError
            self.status = int(data[9:12])
            head = data[:end].lower()
            at = head.find(b"\r\ncontent-length:")
            if at >= 0:
                eol = head.find(b"\r\n", at + 2)
                self.length = int(head[at + 17 : eol if eol >= 0 else end])
            elif b"\r\ntransfer-encoding:" in head and b"chunked" in head:
                self.chunked = True
            elif self.status in (204, 304):
                self.length = 0
        except ValueError:
            self._protocol_error()
            return False
        self.body_start = end + 4
        self.will_close = b"\r\nconnection: close" in head or (
            data.startswith(b"HTTP/1.0") and b"\r\nconnection: keep-alive" not in head
        )
        return True

    def _protocol_error(self) -> None:
        sample, run = self.sample, self.run
        self.sample = None
        self.abort()
        if sample is not None and run is not None:
            run.fail(sample, "RemoteProtocolError")

    def _complete(self, body: bytes) -> None:
        sample, run = self.sample, self.run
        assert sample is not None and run is not None
        sample.done = time.monotonic()
        sample.status = self.status
        self.sample = None
        if run.keep_answers and body:
            with contextlib.suppress(ValueError):
                sample.answer = json.loads(body)
        if self.will_close:
            self.closed = True
            self.transport.close()  # type: ignore[union-attr]
        self._reset()
        self.pool.release(self)
        run.finished(sample)

    def eof_received(self) -> bool:
        return False  # close our side too; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.pool.lost(self)
        sample, run = self.sample, self.run
        if sample is None or run is None:
            return
        if self.status and self.length < 0 and not self.chunked:
            self._complete(bytes(self.buffer[self.body_start :]))  # ended by the close
            return
        self.sample = None
        run.fail(sample, "RemoteProtocolError" if exc is None else "ReadError")

    def abort(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()


def _dechunk(data: bytes, pos: int) -> tuple[bytes, int] | None:
    """A chunked body starting at `pos`: (body, end offset), or None while incomplete."""
    chunks: list[bytes] = []
    while True:
        eol = data.find(b"\r\n", pos)
        if eol < 0:
            return None
        size = int(data[pos:eol].split(b";", 1)[0], 16)
        if size == 0:
            if data[eol + 2 : eol + 4] == b"\r\n":
                return b"".join(chunks), eol + 4
            trailers_end = data.find(b"\r\n\r\n", eol + 2)
            return None if trailers_end < 0 else (b"".join(chunks), trailers_end + 4)
        start = eol + 2
        if len(data) < start + size + 2:
            return None
        chunks.append(data[start : start + size])
        pos = start + size + 2


class _Pool:
    """The connections to one host:port: idle ones reused last-in first-out."""

    def __init__(self, host: str, port: int, limit: int, timeout: float) -> None:
        self.host = host
        self.port = port
        self.limit = limit
        self.timeout = timeout
        self.idle: list[_Connection] = []
        self.busy: set[_Connection] = set()
        self.opening = 0
        self.opened = 0  # connections opened so far
        self.waiting: collections.deque[tuple[_Run, Sample, bytes]] = collections.deque()
        self.tasks: set[asyncio.Task[None]] = set()

    def count(self) -> int:
        return len(self.idle) + len(self.busy) + self.opening

    async def warm(self, connections: int) -> None:
        """Open connections up front, so the run does not start by connecting."""
        now = time.monotonic()
        for conn in [c for c in self.idle if now - c.idle_since > IDLE_REUSE]:
            self.idle.remove(conn)
            conn.closed = True
            conn.transport.close()  # type: ignore[union-attr]
        missing = min(connections, self.limit) - self.count()
        if missing > 0:
            self.opening += missing
            await asyncio.gather(*(self._connect() for _ in range(missing)))

    def submit(self, run: _Run, sample: Sample, data: bytes) -> None:
        idle = self.idle
        while idle:
            conn = idle.pop()
            if conn.closed:
                continue
            if sample.sent - conn.idle_since > IDLE_REUSE:  # the server may be closing it now
                conn.closed = True
                conn.transport.close()  # type: ignore[union-attr]
                continue
            conn.send(run, sample, data)
            return
        self.waiting.append((run, sample, data))
        self._open_if_needed()

    def _open_if_needed(self) -> None:
        if len(self.waiting) > self.opening and self.count() < self.limit:
            self.opening += 1  # now: several may ask before the task starts
            task = asyncio.ensure_future(self._connect())
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def _connect(self) -> None:
        """Open one connection (already counted in `opening`) and put it to work."""
        loop = asyncio.get_running_loop()
        try:
            _, conn = await loop.create_connection(lambda: _Connection(self), self.host, self.port)
        except OSError:
            if self.waiting:
                run, sample, _ = self.waiting.popleft()
                run.fail(sample, "ConnectError")
            return
        finally:
            self.opening -= 1
        self.opened += 1
        self.release(conn)

    def release(self, conn: _Connection) -> None:
        """`conn` is free: give it the oldest waiting request, or park it."""
        self.busy.discard(conn)
        if conn.closed:
            self._open_if_needed()
            return
        if self.waiting:
            run, sample, data = self.waiting.popleft()
            conn.send(run, sample, data)
        else:
            conn.idle_since = time.monotonic()
            self.idle.append(conn)

    def lost(self, conn: _Connection) -> None:
        self.busy.discard(conn)
        with contextlib.suppress(ValueError):
            self.idle.remove(conn)
        self._open_if_needed()

    def sweep(self, now: float) -> None:
        """Fail what has waited longer than the timeout, as httpx's timeouts would."""
        for conn in [c for c in self.busy if c.sample and now - c.sample.sent > self.timeout]:
            sample, run = conn.sample, conn.run
            conn.sample = None
            conn.abort()
            if sample is not None and run is not None:
                run.fail(sample, "ReadTimeout")
        while self.waiting and now - self.waiting[0][1].due > self.timeout:
            run, sample, _ = self.waiting.popleft()
            run.fail(sample, "PoolTimeout")

    def abandon(self, run: _Run) -> int:
        """Drop what `run` still has outstanding (its connections are closed); how many."""
        dropped = 0
        for conn in [c for c in self.busy if c.run is run and c.sample is not None]:
            conn.sample = None
            conn.abort()
            dropped += 1
        kept = collections.deque(item for item in self.waiting if item[0] is not run)
        dropped += len(self.waiting) - len(kept)
        self.waiting = kept
        return dropped

    def close(self) -> None:
        for conn in [*self.idle, *self.busy]:
            conn.sample = None
            conn.abort()
        self.idle.clear()
        self.busy.clear()
        for task in self.tasks:
            task.cancel()


class Client:
    """Keep-alive HTTP/1.1 connections, at most `max_connections` per host:port.

    Requests beyond that wait for a free connection (as in httpx's pool); an answer
    slower than `timeout` seconds fails as ReadTimeout.
    """

    def __init__(self, max_connections: int = 256, timeout: float = 30.0) -> None:
        self.max_connections = max_connections
        self.timeout = timeout
        self.pools: dict[tuple[str, int], _Pool] = {}

    def pool(self, host: str, port: int) -> _Pool:
        key = (host, port)
        if key not in self.pools:
            self.pools[key] = _Pool(host, port, self.max_connections, self.timeout)
        return self.pools[key]

    async def aclose(self) -> None:
        for pool in self.pools.values():
            pool.close()
        self.pools.clear()
        await asyncio.sleep(0)  # let the transports finish closing

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


def client_for(max_in_flight: int, timeout: float = 30.0) -> Client:
    return Client(max_connections=max_in_flight, timeout=timeout)


def request_head(url: str, headers: dict[str, str] | None = None) -> tuple[str, int, bytes]:
    """(host, port, the request's bytes up to the Content-Length value) for POST `url`."""
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise ValueError(f"only http://host[:port]/path URLs are supported, not {url!r}")
    host, port = parts.hostname, parts.port or 80
    authority = f"[{host}]" if ":" in host else host
    if parts.port is not None:
        authority += f":{port}"
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    fields = {"host": ("Host", authority), "content-type": ("Content-Type", "application/json")}
    for name, value in (headers or {}).items():
        fields[name.lower()] = (name, value)
    fields.pop("content-length", None)
    lines = [f"POST {target} HTTP/1.1", *(f"{name}: {value}" for name, value in fields.values())]
    return host, port, ("\r\n".join(lines) + "\r\nContent-Length: ").encode("latin-1")


# -- the open loop ----------------------------------------------------------------------


class _Sender:
    """Sends every request that has become due; says when the next one will be."""

    def __init__(
        self,
        result: Result,
        run: _Run,
        pool: _Pool,
        head: bytes,
        body: Callable[[int], bytes],
        *,
        total: int,
        max_in_flight: int,
        start: float,
    ) -> None:
        self.result = result
        self.run = run
        self.pool = pool
        self.head = head
        self.body = body
        self.rate = result.rate
        self.total = total
        self.max_in_flight = max_in_flight
        self.start = start
        self.index = 0
        self.next_sweep = start + SWEEP
        self.last_payload: bytes | None = None
        self.data = b""

    def send_due(self, now: float) -> float:
        """Send what is due at `now`; returns when the next one is due (inf: all sent)."""
        run, pool, samples = self.run, self.pool, self.result.samples
        index, total, rate, start = self.index, self.total, self.rate, self.start
        while index < total:
            due = start + index / rate
            if due > now:
                break
            index += 1
            if run.inflight >= self.max_in_flight:
                self.result.skipped += 1
                continue
            payload = self.body(index - 1)
            if payload is not self.last_payload:
                self.data = self.head + b"%d\r\n\r\n" % len(payload) + payload
                self.last_payload = payload
            sample = Sample(index - 1, due, now)
            samples.append(sample)
            run.inflight += 1
            pool.submit(run, sample, self.data)
        self.index = index
        if now >= self.next_sweep:
            pool.sweep(now)
            self.next_sweep = now + SWEEP
        return start + index / rate if index < total else math.inf


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


class _Itimerspec(ctypes.Structure):
    _fields_ = [("it_interval", _Timespec), ("it_value", _Timespec)]


class _TimerFd:
    """A Linux timerfd on CLOCK_MONOTONIC (time.monotonic's clock), armed at absolute times.

    asyncio's and uvloop's timers have millisecond resolution (uvloop's may also fire up
    to a millisecond early); this one wakes the loop within tens of microseconds.
    """

    def __init__(self) -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.timerfd_create.argtypes = [ctypes.c_int, ctypes.c_int]
        libc.timerfd_settime.argtypes = [
            ctypes.c_int,
            ctypes.c_int,
            ctypes.POINTER(_Itimerspec),
            ctypes.POINTER(_Itimerspec),
        ]
        self.fd = libc.timerfd_create(1, os.O_NONBLOCK | os.O_CLOEXEC)  # CLOCK_MONOTONIC
        if self.fd < 0:
            raise OSError(ctypes.get_errno(), "timerfd_create failed")
        self._settime = libc.timerfd_settime
        self._spec = _Itimerspec()

    def arm(self, when: float) -> None:
        value = self._spec.it_value
        value.tv_sec = int(when)
        value.tv_nsec = min(999_999_999, int((when - value.tv_sec) * 1e9))
        if self._settime(self.fd, 1, ctypes.byref(self._spec), None) < 0:  # TFD_TIMER_ABSTIME
            raise OSError(ctypes.get_errno(), "timerfd_settime failed")

    def clear(self) -> None:
        with contextlib.suppress(BlockingIOError):
            os.read(self.fd, 8)

    def close(self) -> None:
        os.close(self.fd)


def _timerfd() -> _TimerFd | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return _TimerFd()
    except (OSError, AttributeError):
        return None


async def _tick(sender: _Sender) -> None:
    """Call sender.send_due when requests are due, at most once per TICK."""
    timer = _timerfd()
    if timer is None:  # asyncio.sleep: to the millisecond
        next_due = sender.start
        while next_due < math.inf:
            wait = next_due - time.monotonic()
            await asyncio.sleep(wait if wait >= TICK else TICK if wait > 0 else 0)
            next_due = sender.send_due(time.monotonic())
        return
    loop = asyncio.get_running_loop()
    finished: asyncio.Future[None] = loop.create_future()

    def on_timer() -> None:
        try:
            timer.clear()
            now = time.monotonic()
            next_due = sender.send_due(now)
            if next_due < math.inf:
                timer.arm(max(next_due, now + TICK))
            elif not finished.done():
                finished.set_result(None)
        except Exception as exc:
            if not finished.done():
                finished.set_exception(exc)

    loop.add_reader(timer.fd, on_timer)
    try:
        timer.arm(sender.start)
        await finished
    finally:
        loop.remove_reader(timer.fd)
        timer.close()


async def open_loop(
    client: Client,
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
    host, port, head = request_head(url, headers)
    pool = client.pool(host, port)
    run = _Run(keep_answers, on_answer)
    loop = asyncio.get_running_loop()
    result.loop = type(loop).__module__.split(".")[0]
    # Up front: enough connections for ~20 ms of answers (more are opened on demand).
    await pool.warm(min(max_in_flight, max(4, int(rate * 0.02))))
    opened_before = pool.opened

    cpu, thread_cpu = time.process_time(), time.thread_time()
    start = time.monotonic() + 0.05
    sender = _Sender(
        result,
        run,
        pool,
        head,
        body,
        total=int(rate * duration),
        max_in_flight=max_in_flight,
        start=start,
    )
    try:
        await _tick(sender)
        deadline = time.monotonic() + drain
        while run.inflight and time.monotonic() < deadline:
            run.waiter = loop.create_future()
            await asyncio.wait([run.waiter], timeout=min(SWEEP, deadline - time.monotonic()))
            pool.sweep(time.monotonic())
    finally:
        result.unfinished = pool.abandon(run) if run.inflight else 0
    result.cpu_seconds = time.process_time() - cpu
    result.thread_cpu_seconds = time.thread_time() - thread_cpu
    result.connections_opened = pool.opened - opened_before
    result.sent = len(result.samples)
    result.samples = [s for s in result.samples if s.done]
    result.elapsed = max((s.done for s in result.samples), default=start) - start
    return result


def summary(result: Result) -> dict[str, Any]:
    from common import percentile

    latencies = [s.latency for s in result.ok]
    lags = result.lags()
    per_request = 1e6 / result.sent if result.sent else float("nan")
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
        "lag_p50_ms": percentile(lags, 50) * 1000,
        "lag_p99_ms": percentile(lags, 99) * 1000,
        "generator_cpu_us_per_request": result.cpu_seconds * per_request,
        "generator_thread_cpu_us_per_request": result.thread_cpu_seconds * per_request,
        "connections_opened": result.connections_opened,
        "loop": result.loop,
    }


def run(main: Coroutine[Any, Any, T]) -> T:
    """asyncio.run(main), on uvloop when it is installed."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)


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
    run(_main(arguments, body))
