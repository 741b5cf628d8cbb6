"""What every benchmark shares: processes, smtp-sink, schemas, fast enqueue, memory, tables.

The benchmarks run the installed `odiseo` (the one beside this interpreter) against
PostgreSQL, each in a fresh `bench_<random>` schema that is dropped at the end, and
stop every process they started, whatever happens.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import ctypes
import datetime as dt
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from fastapi import FastAPI
from pydantic import SecretStr

from odiseo.api.app import create_app
from odiseo.config import Settings
from odiseo.domain.models import NewEmail, OutgoingEmail
from odiseo.mime import build_message
from odiseo.storage.postgres import PostgresStore

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
DATABASE_URL = os.environ.get("BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
ODISEO = Path(sys.executable).parent / "odiseo"
SMTP_SINK = "/usr/sbin/smtp-sink"
SMTP_SOURCE = "/usr/sbin/smtp-source"
WRK = shutil.which("wrk") or "/usr/bin/wrk"
FROM_EMAIL = "noreply@odiseo.io"
CHUNK = 500
STOP_SECONDS = 15.0


# -- ports, environment, processes ----------------------------------------------------


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, *, timeout: float = 10.0, process: subprocess.Popen[Any]) -> None:
    """Block until 127.0.0.1:`port` accepts connections (fails if `process` exits first)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args!r} exited ({process.returncode}) before listening")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


def require_tools(*paths: str) -> None:
    """Stop with a clear message when a tool from bench/setup.sh is missing."""
    missing = [p for p in paths if not (Path(p).exists() or shutil.which(p))]
    if missing:
        sys.exit(f"missing {', '.join(missing)}: run `bash bench/setup.sh` first (as root)")


def odiseo_env(schema: str, **extra: str) -> dict[str, str]:
    """A clean environment for an odiseo process: this bench's schema, quiet logs, no file log."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "DATABASE_URL": DATABASE_URL,
        "SCHEMA_NAME": schema,
        "LOG_LEVEL": "WARNING",
        "LOG_TO_FILE": "false",
        **extra,
    }


def smtp_env(port: int) -> dict[str, str]:
    return {"SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(port), "SMTP_USE_TLS": "false"}


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Linux: SIGTERM the child if the benchmark itself dies (prctl PR_SET_PDEATHSIG)."""
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)


class Processes:
    """Every subprocess a benchmark starts; all are stopped on exit, even on errors."""

    def __init__(self) -> None:
        self.workdir = Path(tempfile.mkdtemp(prefix="odiseo-bench-"))
        self.running: list[subprocess.Popen[bytes]] = []
        self.logs: dict[int, Path] = {}

    def start(
        self, name: str, argv: Sequence[str], *, env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        """Start `argv` in the work directory (no .env there), output to `<name>.log`."""
        log_path = self.workdir / f"{name}.log"
        with log_path.open("ab") as log:
            popen = subprocess.Popen(
                list(argv),
                cwd=self.workdir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent if sys.platform == "linux" else None,
            )
        self.running.append(popen)
        self.logs[popen.pid] = log_path
        return popen

    def odiseo(
        self, name: str, args: Sequence[str], env: dict[str, str]
    ) -> subprocess.Popen[bytes]:
        return self.start(name, [str(ODISEO), *args], env=env)

    def log_tail(self, popen: subprocess.Popen[bytes], lines: int = 20) -> str:
        path = self.logs.get(popen.pid)
        if path is None or not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, popen: subprocess.Popen[bytes], timeout: float = STOP_SECONDS) -> int | None:
        """SIGTERM, then SIGKILL after `timeout`; the exit code (None when it had to be killed)."""
        code: int | None = None
        if popen.poll() is None:
            popen.send_signal(signal.SIGTERM)
            try:
                code = popen.wait(timeout)
            except subprocess.TimeoutExpired:
                popen.kill()
                popen.wait(5)
        else:
            code = popen.returncode
        if popen in self.running:
            self.running.remove(popen)
        return code

    def stop_all(self) -> None:
        for popen in list(self.running):
            self.stop(popen)

    def __enter__(self) -> Processes:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_all()
        shutil.rmtree(self.workdir, ignore_errors=True)


def exit_cleanly_on_sigterm() -> None:
    """Turn SIGTERM into SystemExit so that every `finally` (process stops, DROP SCHEMA) runs."""

    def handler(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, handler)


def wait_http_ok(url: str, *, process: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    """Poll `url` until it answers 200 (fails if `process` exits first)."""
    deadline = time.monotonic() + timeout
    last: object = None
    with httpx.Client(timeout=2.0) as client:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"{process.args!r} exited ({process.returncode}) while starting")
            try:
                response = client.get(url)
                if response.status_code == 200:
                    return
                last = response.status_code
            except httpx.TransportError as exc:
                last = exc
            time.sleep(0.1)
    raise RuntimeError(f"{url} not ready after {timeout} s (last: {last!r})")


async def poll(condition: Callable[[], bool], *, timeout: float, interval: float = 0.1) -> bool:
    """Check `condition` every `interval` s until it holds (True) or `timeout` passes (False)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(interval)
    return True


# -- smtp-sink --------------------------------------------------------------------------


class SmtpSink:
    """Postfix's smtp-sink on a free loopback port: accepts and discards every message."""

    def __init__(self, processes: Processes, *, sessions: int = 256) -> None:
        self.processes = processes
        self.port = free_port()
        argv = [SMTP_SINK, "-c", "-m", str(sessions)]
        if os.geteuid() == 0:
            argv += ["-u", "nobody"]  # required as root; it drops to nobody after bind
        argv += [f"127.0.0.1:{self.port}", "1024"]
        self.popen = processes.start(f"smtp-sink-{self.port}", argv)
        wait_for_port(self.port, process=self.popen)

    def messages(self) -> int:
        """Messages accepted so far, from the running counter smtp-sink -c prints."""
        path = self.processes.logs[self.popen.pid]
        with path.open("rb") as log:
            log.seek(max(0, path.stat().st_size - 256))
            text = log.read().decode(errors="replace")
        found = re.findall(r"mesg=(\d+)", text)
        return int(found[-1]) if found else 0

    def stop(self) -> None:
        self.processes.stop(self.popen)


def smtp_source(
    port: int, *, count: int, sessions: int, size: int = 2000, reuse: bool = False
) -> tuple[float, str]:
    """Send `count` messages of `size` bytes with smtp-source; (seconds, its output tail)."""
    argv = [SMTP_SOURCE, "-s", str(sessions), "-l", str(size), "-m", str(count)]
    argv += ["-d"] if reuse else []
    argv += ["-f", "bench@odiseo.io", "-t", "sink@example.com", f"127.0.0.1:{port}"]
    started = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, timeout=600, check=False)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"smtp-source failed ({done.returncode}): {done.stderr.decode()[-500:]}")
    return elapsed, done.stderr.decode(errors="replace")[-300:]


# -- PostgreSQL -------------------------------------------------------------------------


def new_schema_name() -> str:
    return f"bench_{uuid.uuid4().hex[:12]}"


async def drop_schema(name: str) -> None:
    conn = await asyncpg.connect(DATABASE_URL, timeout=10)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
    finally:
        await conn.close()


@contextlib.asynccontextmanager
async def bench_schema() -> AsyncIterator[str]:
    """A fresh, empty schema name (odiseo creates it on migrate); dropped afterwards."""
    name = new_schema_name()
    try:
        yield name
    finally:
        await drop_schema(name)


@contextlib.asynccontextmanager
async def migrated_store(schema: str, *, pool_size: int = 10) -> AsyncIterator[PostgresStore]:
    store = PostgresStore(DATABASE_URL, schema=schema, pool_size=pool_size)
    try:
        await store.migrate()
        yield store
    finally:
        await store.close()


@contextlib.asynccontextmanager
async def in_process_app(
    schema: str, key: str, *, bearer: bool = False
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """The real application on `schema` with one API key (its lifespan run), and a client
    calling it in-process over httpx's ASGI transport (no network); `bearer` sends the key."""
    settings = Settings(
        _env_file=None,
        database_url=DATABASE_URL,
        schema_name=schema,
        api_keys=SecretStr(key),
        log_to_file=False,
        log_level="WARNING",
        email_provider="outbox",
    )
    app = create_app(settings)
    headers = {"Authorization": f"Bearer {key}"} if bearer else {}
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://127.0.0.1", headers=headers
        ) as client:
            yield app, client


async def status_counts(conn: asyncpg.Connection, schema: str) -> dict[str, int]:
    rows = await conn.fetch(f'SELECT status, count(*) AS n FROM "{schema}".emails GROUP BY status')
    return {row["status"]: row["n"] for row in rows}


async def postgres_version() -> str:
    conn = await asyncpg.connect(DATABASE_URL, timeout=10)
    try:
        return str(await conn.fetchval("SHOW server_version"))
    finally:
        await conn.close()


# -- messages ---------------------------------------------------------------------------

_ROW = (
    '<tr><td style="padding:4px 8px">{name}</td><td style="padding:4px 8px">{qty}</td>'
    '<td style="padding:4px 8px;text-align:right">{price}</td></tr>'
)


def html_body(n: int, size: int = 2048) -> str:
    """A realistic order-confirmation HTML body of about `size` bytes."""
    rows = "".join(
        _ROW.format(name=f"Item {n}-{i} (size M, colour {i % 7})", qty=i % 3 + 1, price=f"{i}.99")
        for i in range(1, 6)
    )
    html = (
        '<!doctype html><html><head><meta charset="utf-8"><title>Your order</title></head>'
        '<body style="font-family:Arial,sans-serif;color:#222">'
        f"<h1>Thanks for your order #{100000 + n}</h1>"
        "<p>Hello Ana, we have received your order and it is being prepared. "
        "You will receive another email when it ships.</p>"
        f'<table style="border-collapse:collapse">{rows}</table>'
        '<p><a href="https://shop.example.com/orders/'
        f'{100000 + n}">See your order</a></p>'
    )
    footer = (
        '<p style="font-size:12px;color:#777">You receive this email because you placed an '
        "order at shop.example.com. Questions? Reply to this email.</p>"
    )
    padding = max(0, size - len(html) - len(footer) - len("</body></html>"))
    filler = ("<p>" + "Lorem ipsum dolor sit amet, consectetur adipiscing elit. " * 40)[:padding]
    return html + footer + (filler[:-4] + "</p>" if padding > 8 else "") + "</body></html>"


def email_json(n: int = 0) -> dict[str, Any]:
    """A POST /emails body carrying the ~2 KB HTML body."""
    return {
        "to": [f"customer{n}@example.com"],
        "subject": f"Your order #{100000 + n} is confirmed",
        "body": html_body(n),
        "tags": ["order", "confirmation"],
        "metadata": {"order_id": 100000 + n},
    }


def new_email(n: int = 0) -> NewEmail:
    """A store-level message like the ones the tests build, with the ~2 KB HTML body."""
    message_id = str(uuid.uuid4())
    return NewEmail(
        email=OutgoingEmail(
            message_id=message_id,
            rfc_message_id=f"<{message_id}@odiseo.io>",
            from_email=FROM_EMAIL,
            from_name="Odiseo",
            to=(f"customer{n}@example.com",),
            subject=f"Your order #{100000 + n} is confirmed",
            html=html_body(n),
            text=None,
        ),
        priority=5,
        max_retries=3,
        tags=("order", "confirmation"),
        metadata={"order_id": 100000 + n},
    )


def message_bytes(email: OutgoingEmail, *, date: dt.datetime) -> bytes:
    """The wire bytes the worker sends for `email` (build_message returns bytes or a message)."""
    built: Any = build_message(email, date=date)
    return built if isinstance(built, bytes) else bytes(built.as_bytes())


async def enqueue_many(store: PostgresStore, count: int, *, chunk: int = CHUNK) -> float:
    """Store `count` messages in transactions of `chunk`; returns the seconds spent storing."""
    spent = 0.0
    for start in range(0, count, chunk):
        items = [new_email(n) for n in range(start, min(count, start + chunk))]
        began = time.perf_counter()
        await store.enqueue(items, now=dt.datetime.now(dt.UTC))
        spent += time.perf_counter() - began
    return spent


# -- memory -----------------------------------------------------------------------------


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak RSS) of `pid` in KiB, from /proc/PID/status; {} once it is gone."""
    found: dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                key, _, value = line.partition(":")
                if key in {"VmRSS", "VmHWM"}:
                    found[key] = int(value.split()[0])
    except (FileNotFoundError, ProcessLookupError):
        return {}
    return found


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds `pid` has used so far (0.0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds of `pid` and its live children (the processes of API_WORKERS)."""
    path = f"/proc/{pid}/task/{pid}/children"
    try:
        with open(path) as listing:
            children = [int(child) for child in listing.read().split()]
    except FileNotFoundError:
        children = []
    return cpu_seconds(pid) + sum(cpu_seconds(child) for child in children)


@dataclass
class MemorySampler:
    """Samples a process's RSS in a thread; keeps the largest RSS seen and the last VmHWM."""

    pid: int
    interval: float = 0.2
    max_rss_kib: int = 0
    hwm_kib: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> MemorySampler:
        self._thread = threading.Thread(target=self._run, daemon=True, name=f"rss-{self.pid}")
        self._thread.start()
        return self

    def sample(self) -> None:
        status = proc_status(self.pid)
        self.max_rss_kib = max(self.max_rss_kib, status.get("VmRSS", 0))
        self.hwm_kib = max(self.hwm_kib, status.get("VmHWM", 0))

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def stop(self) -> int:
        """Stop sampling (call while the process still runs); returns peak RSS in KiB."""
        self.sample()
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2)
        return max(self.hwm_kib, self.max_rss_kib)


def mib(kib: int) -> str:
    return f"{kib / 1024:.1f} MiB"


# -- statistics and tables --------------------------------------------------------------


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile of `values` (nan when empty)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(pct / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms" if seconds == seconds else "n/a"


def rate(value: float) -> str:
    return f"{value:,.0f}"


class Report:
    """Prints Markdown to stdout and keeps a copy under bench/results/ (git-ignored)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.lines: list[str] = []

    def line(self, text: str = "") -> None:
        print(text, flush=True)
        self.lines.append(text)

    def table(self, headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
        cells = [[str(c) for c in headers]] + [[str(c) for c in row] for row in rows]
        widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
        numeric = [
            all(re.fullmatch(r"[-+]?[\d,.]+( ?[%a-zA-Z/]+)?", row[i]) for row in cells[1:])
            for i in range(len(headers))
        ]

        def fmt(row: list[str]) -> str:
            padded = [
                cell.rjust(w) if num else cell.ljust(w)
                for cell, w, num in zip(row, widths, numeric, strict=True)
            ]
            return "| " + " | ".join(padded) + " |"

        self.line(fmt(cells[0]))
        rule = [
            ("-" * (w - 1) + ":") if num else "-" * w
            for w, num in zip(widths, numeric, strict=True)
        ]
        self.line("| " + " | ".join(rule) + " |")
        for row in cells[1:]:
            self.line(fmt(row))
        self.line()

    def header(self, title: str, settings: dict[str, object]) -> None:
        """Title, the machine (cores, date, load) and this run's settings."""
        wait = float(os.environ.get("BENCH_WAIT_IDLE", "0") or 0)
        idle = wait_for_idle_cpus(wait) if wait > 0 else cpu_idle_share()
        self.line(f"## {title}")
        self.line()
        rows = [[key, value] for key, value in machine_facts().items()]
        rows.insert(4, ["CPUs idle at start (2 s sample)", f"{idle:.0%}"])
        rows += [[key, value] for key, value in settings.items()]
        self.table(["", "value"], rows)

    def save(self) -> Path:
        load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
        self.line(
            f"At the end: load average {load}; CPU calibration {calibrate():.0f} ms; "
            f"CPUs idle {cpu_idle_share():.0%} (compare with the header: a slower calibration "
            "or busy CPUs after our processes stopped mean other work shared the cores)."
        )
        RESULTS_DIR.mkdir(exist_ok=True)
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
        path = RESULTS_DIR / f"{self.name}-{stamp}.md"
        path.write_text("\n".join(self.lines) + "\n")
        print(f"(saved to {path.relative_to(REPO)})", file=sys.stderr)
        return path


def machine_facts() -> dict[str, object]:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    try:  # in a thread: the caller may already be inside an event loop
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            version = pool.submit(asyncio.run, postgres_version()).result(timeout=20)
    except Exception as exc:  # the header must not hide the real error that follows
        version = f"unreachable ({type(exc).__name__})"
    return {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "cores (os.cpu_count())": os.cpu_count(),
        "cpu": cpu,
        "load average at start": load,
        "CPU calibration at start": f"{calibrate():.0f} ms (fixed pure-Python loop, best of 3)",
        "python": platform.python_version(),
        "postgresql": version,
        "odiseo": _odiseo_version(),
    }


def cpu_idle_share(seconds: float = 2.0) -> float:
    """The share of all CPUs that was idle over the next `seconds` (from /proc/stat)."""

    def snapshot() -> tuple[int, int]:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        return sum(fields), fields[3] + fields[4]  # total, idle + iowait

    total0, idle0 = snapshot()
    time.sleep(seconds)
    total1, idle1 = snapshot()
    return (idle1 - idle0) / max(1, total1 - total0)


def wait_for_idle_cpus(max_seconds: float, *, idle: float = 0.8) -> float:
    """Wait up to `max_seconds` for the CPUs to be `idle` (share) idle; returns the last share."""
    deadline = time.monotonic() + max_seconds
    share = cpu_idle_share()
    while share < idle and time.monotonic() < deadline:
        print(f"(waiting for idle CPUs: {share:.0%} idle)", file=sys.stderr, flush=True)
        share = cpu_idle_share(5.0)
    return share


def calibrate() -> float:
    """Milliseconds for a fixed pure-Python loop (best of 3): a slower number means busy cores."""
    best = float("inf")
    for _ in range(3):
        began = time.perf_counter()
        total = 0
        for i in range(1_000_000):
            total += i % 7
        best = min(best, time.perf_counter() - began)
    return best * 1000


def _odiseo_version() -> str:
    from odiseo import __version__

    try:
        commit = subprocess.run(
            ["git", "-C", str(REPO), "describe", "--always", "--dirty"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        ).stdout.strip()
    except OSError:
        commit = ""
    return f"{__version__} ({commit})" if commit else __version__
