"""Adversarial review of issue 11 (point 14): a client that never reads its answers."""

from __future__ import annotations

import socket
import time

import pytest

from tests.e2e.test_connections import BODY, HEADER, KEEPALIVE, LIMITS, MARGIN, descriptors
from tests.security.conftest import API_KEYS
from tests.support.processes import Launcher, base_env

pytestmark = pytest.mark.e2e


def test_a_client_that_never_reads_its_answers_cannot_keep_its_socket_review(
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
    try:
        time.sleep(HEADER + BODY + KEEPALIVE + MARGIN)
        held = descriptors(process) - before
    finally:
        for sock in readers:
            sock.close()
    assert held <= 2, f"{held} connections still held after {HEADER + BODY + KEEPALIVE + MARGIN} s"
