"""Safe defaults and secrets, checked on real `odiseo` processes."""

from __future__ import annotations

import select
import socket
import time
from pathlib import Path

import pytest

from tests.security.conftest import EMAIL
from tests.support.app import ALL_KEY, API_KEYS, READ_KEY, SECRETS, SEND_KEY, auth
from tests.support.processes import Launcher, Process, base_env, poll

pytestmark = pytest.mark.e2e

OPEN_WARNING = "the API is open to anyone"


def warning_lines(process: Process, text: str) -> list[str]:
    return [line for line in process.stderr.splitlines() if text in line]


# Keyless API beyond loopback ------------------------------------------------------------------


def test_keyless_api_on_all_interfaces_refuses_to_start(
    launcher: Launcher, sqlite_database: dict[str, str]
) -> None:
    env = base_env(**sqlite_database, API_HOST="0.0.0.0")
    started = time.monotonic()
    process = launcher.run(["api"], env, timeout=20)
    elapsed = time.monotonic() - started

    assert process.popen.returncode not in {0, None}, process.output()
    assert elapsed < 10, process.output()
    lines = process.stderr.strip().splitlines()
    assert len(lines) == 1, process.output()
    assert "API_KEYS" in lines[0], process.output()
    assert "ALLOW_UNAUTHENTICATED" in lines[0], process.output()
    assert "Traceback" not in process.stderr + process.stdout, process.output()


def test_keyless_api_on_all_interfaces_starts_when_allowed_and_says_it_is_open(
    launcher: Launcher, sqlite_database: dict[str, str]
) -> None:
    env = base_env(**sqlite_database, API_HOST="0.0.0.0", ALLOW_UNAUTHENTICATED="true")
    process = launcher.start(["api"], env)
    assert process.wait_ready().status_code == 200  # reached on 127.0.0.1 only
    lines = warning_lines(process, OPEN_WARNING)
    assert len(lines) == 1, process.output()
    assert "WARNING" in lines[0] and "0.0.0.0" in lines[0], process.output()
    with process.client() as http:
        assert http.get("/queue/status").status_code == 200  # open, as it said


def test_api_with_keys_on_all_interfaces_starts_without_the_warning(
    launcher: Launcher, sqlite_database: dict[str, str]
) -> None:
    env = base_env(**sqlite_database, API_HOST="0.0.0.0", API_KEYS=API_KEYS)
    process = launcher.start(["api"], env)
    process.wait_ready()
    with process.client() as http:
        assert http.get("/queue/status").status_code == 401
        assert http.get("/queue/status", headers=auth(READ_KEY)).status_code == 200
    assert warning_lines(process, OPEN_WARNING) == [], process.output()
    assert "API_KEYS" not in process.stderr, process.output()


def test_keyless_api_on_loopback_starts_and_says_it_is_open(
    launcher: Launcher, sqlite_database: dict[str, str]
) -> None:
    env = base_env(**sqlite_database)  # API_HOST defaults to 127.0.0.1
    process = launcher.start(["api"], env)
    process.wait_ready()
    lines = warning_lines(process, OPEN_WARNING)
    assert len(lines) == 1, process.output()
    assert "WARNING" in lines[0] and "127.0.0.1" in lines[0], process.output()


def test_a_short_key_stops_the_api_with_one_line(
    launcher: Launcher, sqlite_database: dict[str, str]
) -> None:
    secret = "short-secret-1"
    env = base_env(**sqlite_database, API_KEYS=f"{SEND_KEY}:send,{secret}:read")
    process = launcher.run(["api"], env, timeout=20)
    assert process.popen.returncode not in {0, None}, process.output()
    lines = process.stderr.strip().splitlines()
    assert len(lines) == 1 and "16 characters" in lines[0], process.output()
    assert "Traceback" not in process.stderr, process.output()
    assert secret not in process.stderr + process.stdout
    assert SEND_KEY not in process.stderr + process.stdout


# Bodies over MAX_REQUEST_BYTES are not read ---------------------------------------------------


def high_water_mark(pid: int) -> int:
    """VmHWM of the process, in bytes: the most resident memory it ever had."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmHWM in /proc/{pid}/status")


def post_huge_bodies(
    port: int,
    *,
    count: int,
    size: int,
    timeout: float = 30.0,
    request: str = "POST /emails",
    key: str | None = ALL_KEY,
) -> list[bytes]:
    """Open `count` connections, each declaring a `size`-byte `request` (POST /emails), and push
    zero bytes on all of them at once while reading what comes back; return each answer."""
    authorization = f"Authorization: Bearer {key}\r\n" if key else ""
    head = (
        f"{request} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"{authorization}Content-Length: {size}\r\n\r\n"
    ).encode()
    chunk = bytes(256 * 1024)
    sockets = []
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        sock.sendall(head)
        sock.setblocking(False)
        sockets.append(sock)
    sent = dict.fromkeys(sockets, 0)
    answers = dict.fromkeys(sockets, b"")
    reading = set(sockets)
    writing = set(sockets)
    deadline = time.monotonic() + timeout
    try:
        while reading and time.monotonic() < deadline:
            readable, writable, _ = select.select(list(reading), list(writing & reading), [], 1)
            for sock in readable:
                try:
                    data = sock.recv(65536)
                except OSError:
                    data = b""
                if data:
                    answers[sock] += data
                else:
                    reading.discard(sock)
            for sock in writable:
                if sock not in reading:
                    continue
                try:
                    sent[sock] += sock.send(chunk[: size - sent[sock]])
                except OSError:  # the server hung up, as it should
                    writing.discard(sock)
                    continue
                if sent[sock] >= size:
                    writing.discard(sock)
    finally:
        for sock in sockets:
            sock.close()
    return [answers[sock] for sock in sockets]


def test_four_30_mb_bodies_are_refused_without_being_read(
    launcher: Launcher, sqlite_database: dict[str, str]
) -> None:
    env = base_env(**sqlite_database, API_KEYS=API_KEYS)  # MAX_REQUEST_BYTES: the 16 MB default
    process = launcher.start(["api"], env)
    process.wait_ready()
    port = int(env["API_PORT"])
    with process.client() as http:  # warm up every path a request takes, refused or not
        for _ in range(3):
            assert http.post("/emails", json=EMAIL, headers=auth(SEND_KEY)).status_code == 202
    assert post_huge_bodies(port, count=1, size=17 * 1024 * 1024)[0].startswith(b"HTTP/1.1 413 ")
    pid = process.popen.pid
    baseline = high_water_mark(pid)

    answers = post_huge_bodies(port, count=4, size=30 * 1024 * 1024)

    for answer in answers:
        assert answer.startswith(b"HTTP/1.1 413 "), f"{answer[:200]!r}{process.output()}"
        assert b"MAX_REQUEST_BYTES" in answer, answer
    grown = high_water_mark(pid) - baseline
    assert grown < 40 * 1024 * 1024, f"VmHWM grew by {grown / 1e6:.1f} MB"
    with process.client() as http:  # and the server is still fine
        assert http.get("/queue/status", headers=auth(READ_KEY)).json()["pending"] == 3


# Keyless bodies are not read -------------------------------------------------------------------

BODY_REQUESTS = [
    "POST /emails",
    "POST /emails/batch",
    "PUT /templates/t",
    "POST /templates/t/render",
    "PATCH /emails/00000000-0000-0000-0000-000000000000",
]


def answer_without_sending_the_body(port: int, request: str, *, size: int) -> bytes:
    """Declare a `size`-byte body, send only its first bytes, and read the answer (one
    read up to its Content-Length) while the rest is never sent."""
    head = (
        f"{request} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {size}\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", port), timeout=15) as sock:
        sock.sendall(head + b'{"to": [')
        answer = b""
        while b"\r\n\r\n" not in answer:
            answer += sock.recv(65536) or b"<closed>"
        headers, _, body = answer.partition(b"\r\n\r\n")
        length = int(headers.lower().partition(b"content-length: ")[2].split(b"\r\n")[0])
        while len(body) < length:
            body += sock.recv(65536)
        return headers + b"\r\n\r\n" + body


def test_keyless_bodies_are_refused_before_they_are_received(
    launcher: Launcher, sqlite_database: dict[str, str]
) -> None:
    env = base_env(**sqlite_database, API_KEYS=API_KEYS)  # MAX_REQUEST_BYTES: the 16 MB default
    process = launcher.start(["api"], env)
    process.wait_ready()
    port = int(env["API_PORT"])
    for request in BODY_REQUESTS:
        try:
            answer = answer_without_sending_the_body(port, request, size=16 * 1024 * 1024)
        except TimeoutError:
            raise AssertionError(
                f"{request}: no answer until the body came{process.output()}"
            ) from None
        assert answer.startswith(b"HTTP/1.1 401 "), f"{request}: {answer[:300]!r}"
        assert b'"detail"' in answer, answer

    with process.client() as http:  # warm up the refusal path before measuring
        http.put("/templates/t", json={"html": "x"})
    pid = process.popen.pid
    baseline = high_water_mark(pid)
    answers = post_huge_bodies(
        port, count=16, size=16 * 1024 * 1024, request="PUT /templates/t", key=None
    )
    for answer in answers:
        assert answer.startswith(b"HTTP/1.1 401 "), f"{answer[:200]!r}{process.output()}"
    grown = high_water_mark(pid) - baseline
    assert grown < 40 * 1024 * 1024, f"VmHWM grew by {grown / 1e6:.1f} MB"


# API keys never reach the output --------------------------------------------------------------


def test_api_keys_are_never_shown(
    launcher: Launcher, sqlite_database: dict[str, str], tmp_path: Path
) -> None:
    log_dir = tmp_path / "logs"
    env = base_env(
        **sqlite_database,
        API_KEYS=API_KEYS,
        LOG_TO_FILE="true",
        LOG_DIR=str(log_dir),
        LOG_LEVEL="DEBUG",
        RATE_LIMIT_PER_MINUTE="1000",
        METRICS_REQUIRE_KEY="true",
    )
    process = launcher.start(["run"], env)
    process.wait_ready()
    near_misses = ["wrongkey-0123456789abcdef", ALL_KEY + "x", ALL_KEY.upper()]
    answers: list[str] = []
    with process.client() as http:
        posted = http.post("/emails", json=EMAIL, headers=auth(SEND_KEY))
        assert posted.status_code == 202, f"{posted.text}{process.output()}"
        message_id = posted.json()["message_id"]
        for key in (*SECRETS, *near_misses):
            for response in (
                http.post("/emails", json=EMAIL, headers=auth(key)),
                http.post("/emails", json={"to": ["x"]}, headers=auth(key)),
                http.get(f"/emails/{message_id}", headers=auth(key)),
                http.get("/queue/status", headers=auth(key)),
                http.get("/metrics", headers=auth(key)),
                http.put("/templates/t", json={"html": "{{ x"}, headers=auth(key)),
            ):
                answers.append(response.text)
                assert response.status_code != 500, response.text
        answers.append(http.get("/health").text)

        def delivered() -> bool:
            got = http.get(f"/emails/{message_id}", headers=auth(READ_KEY))
            return bool(got.json()["status"] == "sent")

        poll(delivered, timeout=20, what="the worker to deliver the first message")

    process.terminate()
    log_file = log_dir / "email_service.log"
    assert log_file.is_file(), process.output()
    log_text = log_file.read_text()
    assert message_id in log_text, log_text
    places = {
        "stdout": process.stdout,
        "stderr": process.stderr,
        "email_service.log": log_text,
        "responses": "\n".join(answers),
    }
    for where, text in places.items():
        for secret in (*SECRETS, *near_misses):
            assert secret not in text, f"{secret!r} appears in {where}{process.output()}"
