"""API_WORKERS: several `odiseo api` processes on one port (PostgreSQL only)."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.support.postgres import TEST_DATABASE_URL, drop_schema, new_schema_name, require_postgres
from tests.support.processes import Launcher, base_env, poll

pytestmark = pytest.mark.e2e


@pytest.fixture
def postgres_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    asyncio.run(require_postgres())
    schema = new_schema_name()
    try:
        yield base_env(
            DATABASE_URL=TEST_DATABASE_URL,
            SCHEMA_NAME=schema,
            API_WORKERS="2",
            LOG_TO_FILE="true",
            LOG_DIR=str(tmp_path / "logs"),
            EMAIL_PROVIDER="outbox",
            OUTBOX_DIR=str(tmp_path / "outbox"),
        )
    finally:
        asyncio.run(drop_schema(schema))


def children(pid: int) -> list[int]:
    """The API processes of supervisor `pid` (not multiprocessing's resource tracker)."""
    path = Path(f"/proc/{pid}/task/{pid}/children")
    found = [int(child) for child in path.read_text().split()] if path.exists() else []
    return [child for child in found if b"spawn_main" in _cmdline(child)]


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except FileNotFoundError:
        return b""


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def test_api_workers_serve_one_port_and_stop_together(
    launcher: Launcher, postgres_env: dict[str, str], tmp_path: Path
) -> None:
    api = launcher.start(["api"], postgres_env)
    api.wait_ready()
    poll(lambda: len(children(api.popen.pid)) == 2, timeout=20, what="two API processes")
    served = children(api.popen.pid)

    def post(n: int) -> str:
        with api.client() as http:  # a connection each: the kernel spreads them
            answer = http.post(
                "/emails", json={"to": [f"u{n}@example.com"], "subject": "s", "body": "<p>b</p>"}
            )
        assert answer.status_code == 202, f"{answer.text}{api.output()}"
        return str(answer.json()["message_id"])

    with ThreadPoolExecutor(8) as pool:
        ids = list(pool.map(post, range(60)))
    with api.client() as http:
        assert http.get("/queue/status").json()["pending"] == 60
        for message_id in ids[::10]:
            assert http.get(f"/emails/{message_id}").json()["status"] == "pending"
    logged = (tmp_path / "logs" / "email_service.log").read_text()
    assert logged.count("queued for 1 recipient(s)") == 60, logged[-2000:]

    started = time.monotonic()
    assert api.terminate(timeout=15) == 0, api.output()
    assert time.monotonic() - started < 15
    assert not [pid for pid in served if alive(pid)]
    assert "Traceback" not in api.stderr, api.output()


def test_api_processes_stop_when_their_supervisor_is_killed(
    launcher: Launcher, postgres_env: dict[str, str]
) -> None:
    api = launcher.start(["api"], postgres_env)
    api.wait_ready()
    poll(lambda: len(children(api.popen.pid)) == 2, timeout=20, what="two API processes")
    served = children(api.popen.pid)
    api.popen.kill()
    api.popen.wait(5)
    poll(
        lambda: not [pid for pid in served if alive(pid)],
        timeout=15,
        what="the API processes to stop after SIGKILL of their supervisor",
    )


@pytest.mark.parametrize("command", ["api", "run"])
def test_api_workers_refuse_what_they_cannot_serve(
    launcher: Launcher, tmp_path: Path, command: str
) -> None:
    env = base_env(DATABASE_URL=f"sqlite:///{tmp_path / 'odiseo.db'}", API_WORKERS="2")
    done = launcher.run([command], env)
    assert done.popen.returncode not in (0, None)
    expected = "needs PostgreSQL" if command == "api" else "API_WORKERS is for `odiseo api`"
    assert expected in done.stderr, done.output()
    assert "Traceback" not in done.stderr
    assert not os.path.exists(tmp_path / "odiseo.db") or command == "run"


def test_every_process_closes_late_connections(
    launcher: Launcher, postgres_env: dict[str, str]
) -> None:
    """The connection deadlines reach the processes uvicorn's supervisor starts."""
    from tests.e2e.test_connections import HEADER, LIMITS, check_closed, connect, wait_until_closed

    process = launcher.start(["api"], {**postgres_env, **LIMITS})
    process.wait_ready()
    port = int(postgres_env["API_PORT"])
    half = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-"
    clients = [connect(port, f"half a header {i}", half) for i in range(20)]
    wait_until_closed(clients, timeout=HEADER + 8)
    problems = [check_closed(c, HEADER, answer=b"HTTP/1.1 408 ") for c in clients]
    assert [p for p in problems if p] == [], process.output()
