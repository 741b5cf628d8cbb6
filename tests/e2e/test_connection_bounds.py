"""Connections the API must not keep: a client that never reads its answers, a header that
never ends (README: "silent or trickling clients cannot hold the process's descriptors")."""

from __future__ import annotations

import socket
import time

import pytest

from tests.e2e.test_connections import BODY, HEADER, KEEPALIVE, LIMITS, MARGIN, descriptors
from tests.support.app import API_KEYS
from tests.support.processes import Launcher, base_env, poll

pytestmark = pytest.mark.e2e


def test_a_client_that_never_reads_its_answers_cannot_keep_its_socket(
    launcher: Launcher, sqlite_database: dict[str, str]
) -> None:
    """README: "silent or trickling clients cannot hold the process's descriptors". A
    client without a key pipelines 400 `GET /openapi.json` (open even with API_KEYS, about
    30 KB each) and never reads: once the kernel buffers are full the application's send
    waits for a drain that never comes, in the APP phase where "no deadline runs", so the
    connection stays open long after every limit (header 1 s, body 2 s, keep-alive 1.5 s)."""
    process = launcher.start(["api"], base_env(**sqlite_database, API_KEYS=API_KEYS, **LIMITS))
    process.wait_ready()
    port = int(process.env["API_PORT"])
    time.sleep(KEEPALIVE + 1)  # wait_ready's own connection is gone
    before = descriptors(process)
    readers = []
    for _ in range(10):
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", port))
        sock.sendall(b"GET /openapi.json HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" * 400)
        readers.append(sock)
    bound = HEADER + BODY + KEEPALIVE + MARGIN + 15  # a loaded machine; never: held for good
    try:
        for sock in readers:  # answered: accepted, so counted below until the API drops it
            sock.settimeout(60)
            assert sock.recv(1, socket.MSG_PEEK) == b"H"
        poll(
            lambda: descriptors(process) - before <= 2,
            timeout=bound,
            interval=0.5,
            what=f"the API to drop clients that never read (bound {bound} s)",
        )
    finally:
        for sock in readers:
            sock.close()


def _peak_rss_mb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status.read().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) // 1024
    raise AssertionError("no VmHWM")


def test_a_request_header_cannot_grow_without_bound(
    launcher: Launcher, sqlite_database: dict[str, str]
) -> None:
    """README, Bounded input: bodies stop at MAX_REQUEST_BYTES (16 MB) before they are read,
    and headers must arrive within API_HEADER_TIMEOUT_SECONDS. Their size has no bound:
    uvicorn's httptools protocol (h11 has a 16 KB limit, httptools none) buffers one header
    value whole, so a client without a key streams 32 MB of `X-Big:` and the process keeps
    reading it (81 MB raised its peak RSS from 97 to 258 MB here); ten such clients in
    their 10 s each reach gigabytes."""
    process = launcher.start(["api"], base_env(**sqlite_database, API_KEYS=API_KEYS))
    process.wait_ready()
    port = int(process.env["API_PORT"])
    before = _peak_rss_mb(process.popen.pid)
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: ")
    chunk, sent = b"a" * (1 << 20), 0
    try:
        while sent < 32 * len(chunk):
            sock.sendall(chunk)
            sent += len(chunk)
    except OSError:
        pass  # refused or closed by the server: what a bound looks like
    finally:
        sock.close()
    grown = _peak_rss_mb(process.popen.pid) - before
    assert sent < 16 * len(chunk), f"{sent >> 20} MB of one header read; peak RSS +{grown} MB"
