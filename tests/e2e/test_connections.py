"""Silent, slow and idle clients cannot keep their sockets: every phase of a request has a
deadline (API_HEADER_TIMEOUT_SECONDS, API_BODY_TIMEOUT_SECONDS, API_KEEPALIVE_TIMEOUT_SECONDS),
checked with raw sockets against real `odiseo api` and `odiseo run` processes."""

from __future__ import annotations

import contextlib
import os
import select
import socket
import time
from dataclasses import dataclass, field

import pytest

from tests.support.app import API_KEYS
from tests.support.processes import Launcher, Process, base_env

pytestmark = pytest.mark.e2e

HEADER, BODY, KEEPALIVE = 1.0, 2.0, 1.5  # seconds, set through the environment below
MARGIN = 8.0  # a loaded machine may be slow to notice; a socket never closed fails anyway
LIMITS = {
    "API_HEADER_TIMEOUT_SECONDS": str(HEADER),
    "API_BODY_TIMEOUT_SECONDS": str(BODY),
    "API_KEEPALIVE_TIMEOUT_SECONDS": str(KEEPALIVE),
}
HEAD = "POST /emails HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"


@dataclass
class Client:
    """A raw connection: what it sent, what it got back, when its phase began and it closed."""

    name: str
    sock: socket.socket
    began: float = field(default_factory=time.monotonic)
    received: bytes = b""
    closed_after: float | None = None

    def send(self, data: bytes, *, restart: bool = False) -> None:
        self.sock.sendall(data)
        if restart:
            self.began = time.monotonic()


def connect(port: int, name: str, data: bytes = b"") -> Client:
    client = Client(name, socket.create_connection(("127.0.0.1", port), timeout=5))
    if data:
        client.send(data)
    return client


def wait_until_closed(
    clients: list[Client], *, timeout: float, trickle: tuple[Client, ...] = ()
) -> None:
    """Read every client until the server closes it (or `timeout` passes); meanwhile send
    one more header byte to each of `trickle` every 0.2 s."""
    deadline = time.monotonic() + timeout
    open_ = {c.sock: c for c in clients}
    for client in clients:
        client.sock.setblocking(False)
    while open_ and time.monotonic() < deadline:
        readable, _, _ = select.select(list(open_), [], [], 0.2)
        for sock in readable:
            client = open_[sock]
            try:
                data = sock.recv(65536)
            except ConnectionResetError:
                data = b""
            if data:
                client.received += data
            else:
                client.closed_after = time.monotonic() - client.began
                del open_[sock]
        for client in trickle:
            if client.sock in open_:
                with contextlib.suppress(OSError):
                    client.sock.send(b"a")
    for client in clients:
        client.sock.close()


def descriptors(process: Process) -> int:
    return len(os.listdir(f"/proc/{process.popen.pid}/fd"))


def check_closed(client: Client, limit: float, *, answer: bytes | None) -> str | None:
    """What is wrong with how `client` was closed, or None."""
    if client.closed_after is None:
        return f"{client.name}: still open after {limit + MARGIN} s"
    if not limit * 0.5 <= client.closed_after <= limit + MARGIN:
        return f"{client.name}: closed after {client.closed_after:.2f} s, limit {limit} s"
    if answer is not None and not client.received.startswith(answer):
        return f"{client.name}: answered {client.received[:200]!r}"
    return None


@pytest.mark.parametrize("command", ["api", "run"])
def test_silent_slow_and_idle_connections_are_closed_within_their_limits(
    launcher: Launcher, sqlite_database: dict[str, str], command: str
) -> None:
    process = launcher.start([command], base_env(**sqlite_database, **LIMITS))  # no keys
    process.wait_ready()
    port = int(process.env["API_PORT"])
    time.sleep(KEEPALIVE + 1)  # wait_ready's own connection is gone
    before = descriptors(process)

    clients = [connect(port, f"silent {i}") for i in range(50)]
    clients += [
        connect(port, "half a header", b"POST /emails HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Ty"),
        connect(port, "half a body", f"{HEAD}Content-Length: 1000\r\n\r\n".encode() + b'{"to": '),
    ]
    idle = connect(port, "idle after a request", b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    while b'"status"' not in idle.received:
        idle.received += idle.sock.recv(65536)
    idle.began = time.monotonic()  # its idle time starts with the answer
    time.sleep(0.3)
    assert descriptors(process) >= before + 50, "the connections should hold descriptors now"
    with process.client() as http:  # others are served meanwhile
        assert http.get("/health").status_code == 200
        assert http.get("/queue/status").status_code == 200

    wait_until_closed([*clients, idle], timeout=BODY + MARGIN)

    problems = [check_closed(c, HEADER, answer=None) for c in clients[:50]]
    problems += [
        check_closed(clients[50], HEADER, answer=b"HTTP/1.1 408 "),
        check_closed(clients[51], BODY, answer=b"HTTP/1.1 408 "),
        check_closed(idle, KEEPALIVE, answer=b"HTTP/1.1 200 "),
    ]
    assert [p for p in problems if p] == [], process.output()
    assert b"API_HEADER_TIMEOUT_SECONDS" in clients[50].received
    assert b"API_BODY_TIMEOUT_SECONDS" in clients[51].received
    time.sleep(0.5)
    assert descriptors(process) <= before + 2, "the descriptors were not given back"
    with process.client() as http:
        assert http.get("/health").status_code == 200
    assert "Traceback" not in process.stderr, process.output()


def test_a_trickling_header_does_not_extend_its_deadline(
    launcher: Launcher, sqlite_database: dict[str, str]
) -> None:
    process = launcher.start(["api"], base_env(**sqlite_database, **LIMITS))
    process.wait_ready()
    port = int(process.env["API_PORT"])
    slow = connect(port, "one header byte every 0.2 s", b"GET /health HTTP/1.1\r\nX-Slow: ")
    wait_until_closed([slow], timeout=HEADER + MARGIN, trickle=(slow,))
    assert check_closed(slow, HEADER, answer=b"HTTP/1.1 408 ") is None, slow


def test_a_body_refused_before_it_was_read_is_still_bounded(
    launcher: Launcher, sqlite_database: dict[str, str]
) -> None:
    """A keyless request is answered 401 at once; the body the client then owes must still
    come within the body limit, and the connection then idles no longer than keep-alive."""
    process = launcher.start(["api"], base_env(**sqlite_database, API_KEYS=API_KEYS, **LIMITS))
    process.wait_ready()
    port = int(process.env["API_PORT"])
    owing = connect(port, "owes its body", f"{HEAD}Content-Length: 100\r\n\r\n".encode())
    finished = connect(port, "then idle", f"{HEAD}Content-Length: 10\r\n\r\n".encode())
    for client in (owing, finished):
        while b'"detail"' not in client.received:
            client.received += client.sock.recv(65536)
        assert client.received.startswith(b"HTTP/1.1 401 "), client.received
    finished.send(b"0123456789", restart=True)  # the body is complete: idle from here
    wait_until_closed([owing, finished], timeout=BODY + MARGIN)
    assert check_closed(owing, BODY, answer=b"HTTP/1.1 401 ") is None, owing
    assert check_closed(finished, KEEPALIVE, answer=b"HTTP/1.1 401 ") is None, finished


def test_a_request_the_application_takes_long_to_answer_is_not_cut_off(
    launcher: Launcher, sqlite_database: dict[str, str]
) -> None:
    """No deadline runs while the application works: /health waits up to 3 s for an SMTP
    server that accepts connections and never greets, far beyond the limits set here;
    two requests pipelined in one packet are both answered."""
    with socket.create_server(("127.0.0.1", 0)) as silent_smtp:
        env = base_env(
            **sqlite_database,
            API_HEADER_TIMEOUT_SECONDS="0.5",
            API_BODY_TIMEOUT_SECONDS="0.5",
            API_KEEPALIVE_TIMEOUT_SECONDS="0.5",
            EMAIL_PROVIDER="smtp",
            SMTP_HOST="127.0.0.1",
            SMTP_PORT=str(silent_smtp.getsockname()[1]),
            SMTP_USE_TLS="false",
            SMTP_TIMEOUT_SECONDS="30",
        )
        process = launcher.start(["api"], env)
        process.wait_ready()
        port = int(env["API_PORT"])
        request = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
        client = connect(port, "two slow requests", request * 2)
        wait_until_closed([client], timeout=20)
    assert client.received.count(b"HTTP/1.1 200 ") == 2, client.received
    assert client.closed_after is not None and client.closed_after > 2.5, client
    assert b"HTTP/1.1 408 " not in client.received
