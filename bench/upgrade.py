"""How long 1.0.0 waits while the schema is upgraded under it (README, "Upgrading").

    .venv/bin/python bench/upgrade.py [--rows 200000] [--old PATH/TO/1.0.0/odiseo]

A schema made by 1.0.0's `odiseo migrate` is filled with ROWS sent messages and one
event each (what a year of 1.0.0 leaves), a 1.0.0 `odiseo run` serves it, and a probe
POSTs one email every 20 ms to that API. Then the current `odiseo migrate` runs (its
revisions in one transaction, as always). Reported: the migration's wall time, and the
probe's requests that overlapped it (count, slowest, failures) against those before.
Without --old, 1.0.0 is installed from this repository's history first
(tests/support/release.py, about a minute).
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import asyncpg
import httpx
from common import (
    DATABASE_URL,
    ODISEO,
    REPO,
    Processes,
    Report,
    bench_schema,
    exit_cleanly_on_sigterm,
    free_port,
    odiseo_env,
    wait_http_ok,
)

PROBE_SECONDS = 0.02
_FILL = """
INSERT INTO emails (message_id, rfc_message_id, status, priority, attempts, max_retries,
    from_email, to_addrs, cc_addrs, bcc_addrs, reply_to, headers, subject, html, tags, meta,
    created_at, updated_at, sent_at)
SELECT md5(n::text)::uuid::text, '<' || n || '@odiseo.io>', 'sent', 5, 1, 3,
    'noreply@odiseo.io', '["u@example.com"]', '[]', '[]', '[]', '[]', 'Hello', '<p>hi</p>',
    '[]', '{}', now(), now(), now()
FROM generate_series(1, $1) AS n
"""
_EVENTS = (
    "INSERT INTO email_events (email_id, at, kind, attempt) SELECT id, now(), 'sent', 1 FROM emails"
)


def old_odiseo(given: str | None) -> Path:
    if given:
        return Path(given)
    sys.path.insert(0, str(REPO))
    from tests.support.release import RELEASE_1_0_0, install_release

    into = Path(tempfile.mkdtemp(prefix="odiseo-1.0.0-"))
    return install_release(RELEASE_1_0_0, into).odiseo


async def fill(schema: str, rows: int) -> None:
    conn = await asyncpg.connect(DATABASE_URL, server_settings={"search_path": schema})
    try:
        await conn.execute(_FILL, rows)
        await conn.execute(_EVENTS)
        await conn.execute("ANALYZE")
    finally:
        await conn.close()


async def probe(url: str, stop: asyncio.Event, seen: list[tuple[float, float, int]]) -> None:
    """POST an email every PROBE_SECONDS (one at a time): (start, seconds, status) each."""
    body = {"to": ["probe@example.com"], "subject": "probe", "body": "<p>probe</p>"}
    async with httpx.AsyncClient(base_url=url, timeout=120) as http:
        while not stop.is_set():
            began = time.monotonic()
            try:
                status = (await http.post("/emails", json=body)).status_code
            except httpx.HTTPError:
                status = 0
            seen.append((began, time.monotonic() - began, status))
            await asyncio.sleep(PROBE_SECONDS)


def summary(name: str, seen: list[tuple[float, float, int]]) -> list[str]:
    waits = sorted(s for _, s, _ in seen)
    failed = sum(1 for *_, status in seen if status != 202)
    if not waits:
        return [name, "0", "-", "-", "0"]
    middle = waits[len(waits) // 2]
    return [name, str(len(waits)), f"{middle * 1000:.1f}", f"{waits[-1] * 1000:.0f}", str(failed)]


async def main(rows: int, old: Path) -> None:
    report = Report("upgrade")
    report.header("Rolling upgrade from 1.0.0", {"rows": f"{rows:,}", "old": str(old)})
    async with bench_schema() as schema:
        env = odiseo_env(schema, EMAIL_PROVIDER="outbox", API_PORT=str(free_port()))
        with Processes() as processes:
            env["OUTBOX_DIR"] = str(processes.workdir / "outbox")
            await asyncio.to_thread(
                subprocess.run, [str(old), "migrate"], env=env, check=True, capture_output=True
            )
            began = time.monotonic()
            await fill(schema, rows)
            filled = time.monotonic() - began
            run = processes.start("old-run", [str(old), "run"], env=env)
            url = f"http://127.0.0.1:{env['API_PORT']}"
            wait_http_ok(f"{url}/health", process=run)
            stop = asyncio.Event()
            seen: list[tuple[float, float, int]] = []
            probing = asyncio.create_task(probe(url, stop, seen))
            await asyncio.sleep(3)
            start = time.monotonic()
            migrate = await asyncio.to_thread(
                subprocess.run, [str(ODISEO), "migrate"], env=env, capture_output=True
            )
            end = time.monotonic()
            await asyncio.sleep(3)
            stop.set()
            await probing
            if migrate.returncode != 0:
                raise SystemExit(migrate.stderr.decode(errors="replace")[-2000:])
    before = [s for s in seen if s[0] + s[1] < start]
    during = [s for s in seen if s[0] < end and s[0] + s[1] > start]
    report.line(f"{rows:,} sent messages and {rows:,} events stored by 1.0.0 ({filled:.1f} s)")
    report.line(f"current `odiseo migrate` under a running 1.0.0 `odiseo run`: {end - start:.1f} s")
    report.table(
        ["1.0.0 POST /emails", "requests", "p50 ms", "slowest ms", "not 202"],
        [summary("before the migration", before), summary("overlapping it", during)],
    )
    report.save()


if __name__ == "__main__":
    exit_cleanly_on_sigterm()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--old", help="the odiseo program of 1.0.0 (installed if not given)")
    args = parser.parse_args()
    asyncio.run(main(args.rows, old_odiseo(args.old)))
