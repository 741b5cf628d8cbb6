"""The listener's own limits, with real clients: failed-AUTH throttling per IP (421 and a
pause, on a clock the test moves), the connection limit, the command timeout, and the
policy of plaintext AUTH."""

from __future__ import annotations

import dataclasses
import smtplib
import socket
from collections.abc import AsyncIterator, Callable

import pytest

from odiseo.keys import KeyRing
from odiseo.smtp.listener import Listener, ListenerSpec
from odiseo.smtp.submission import submission_specs
from tests.api.smtp.conftest import Submission, in_thread
from tests.support.app import API_KEYS, SEND_KEY

WRONG = "wrong-key-0123456789abcdef"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def start_listener(
    submission: Submission,
) -> AsyncIterator[Callable[..., object]]:
    """Start another submission listener on the app's service, on a free port, with
    `changes` to its spec and the given clock."""
    started: list[Listener] = []
    keys = KeyRing.parse(API_KEYS.split(","))
    (base,) = submission_specs(
        submission.settings, service=submission.app.state.service, keys=keys, hostname="test"
    )

    async def start(clock: Callable[[], float] | None = None, **changes: object) -> Listener:
        spec: ListenerSpec = dataclasses.replace(base, port=0, **changes)  # type: ignore[arg-type]
        listener = Listener(spec, clock=clock or Clock())
        await listener.start()
        started.append(listener)
        return listener

    yield start
    for listener in started:
        await listener.close()


def auth_plain(client: smtplib.SMTP, key: str) -> int:
    """One AUTH PLAIN (smtplib's login() would try LOGIN as well after a failure)."""
    client.user, client.password = "apikey", key
    try:
        return client.auth("PLAIN", client.auth_plain)[0]
    except smtplib.SMTPAuthenticationError as exc:
        return exc.smtp_code


def login(port: int, key: str) -> int:
    with smtplib.SMTP("127.0.0.1", port, timeout=15) as client:
        client.ehlo("x")
        return auth_plain(client, key)


async def test_failed_auth_is_throttled_per_ip(start_listener: Callable[..., object]) -> None:
    clock = Clock()
    listener = await start_listener(clock, auth_failures_per_minute=3)  # type: ignore[misc]
    port = listener.port

    def fail_three_times() -> list[int | str]:
        codes: list[int | str] = []
        with smtplib.SMTP("127.0.0.1", port, timeout=15) as client:
            client.ehlo("x")
            for _ in range(3):
                codes.append(auth_plain(client, WRONG))
            try:
                codes.append(client.noop()[0])  # the 421 that followed the third 535
            except smtplib.SMTPServerDisconnected:
                codes.append("closed")
        return codes

    codes = await in_thread(fail_three_times)
    assert codes in ([535, 535, 535, 421], [535, 535, 535, "closed"]), codes

    def connect() -> int:
        try:
            smtplib.SMTP("127.0.0.1", port, timeout=15).close()
        except smtplib.SMTPConnectError as exc:
            return exc.smtp_code
        return 220

    assert await in_thread(connect) == 421  # paused: even the right key must wait
    clock.now += 59
    assert await in_thread(connect) == 421
    clock.now += 2  # the pause is over
    assert await in_thread(lambda: login(port, SEND_KEY)) == 235


async def test_a_success_does_not_count_and_failures_age_out(
    start_listener: Callable[..., object],
) -> None:
    clock = Clock()
    listener = await start_listener(clock, auth_failures_per_minute=2)  # type: ignore[misc]
    port = listener.port
    assert await in_thread(lambda: login(port, WRONG)) == 535
    clock.now += 61  # a minute later, the first failure no longer counts
    assert await in_thread(lambda: login(port, WRONG)) == 535
    assert await in_thread(lambda: login(port, SEND_KEY)) == 235


async def test_connection_limit_is_421(start_listener: Callable[..., object]) -> None:
    listener = await start_listener(max_connections=1)  # type: ignore[misc]

    def two() -> int:
        with smtplib.SMTP("127.0.0.1", listener.port, timeout=15) as first:
            first.ehlo("x")
            try:
                smtplib.SMTP("127.0.0.1", listener.port, timeout=15).close()
            except smtplib.SMTPConnectError as exc:
                return exc.smtp_code
            return 220

    assert await in_thread(two) == 421

    def again() -> int:  # the first one gone, there is room again
        with smtplib.SMTP("127.0.0.1", listener.port, timeout=15) as client:
            return client.noop()[0]

    assert await in_thread(again) == 250


async def test_a_silent_client_is_disconnected(start_listener: Callable[..., object]) -> None:
    listener = await start_listener(command_timeout=0.2)  # type: ignore[misc]

    def silent() -> bytes:
        with socket.create_connection(("127.0.0.1", listener.port), timeout=20) as sock:
            greeting = sock.recv(1024)
            assert greeting.startswith(b"220"), greeting
            return sock.recv(1024)  # says nothing: the server closes

    assert await in_thread(silent) == b""


def test_plaintext_auth_policy() -> None:
    spec = ListenerSpec(
        name="t",
        handler=object(),
        host="192.0.2.10",
        port=587,
        hostname="t",
        data_size_limit=1,
        max_connections=1,
        command_timeout=1,
        data_timeout=1,
    )
    assert spec.auth_requires_tls
    assert not dataclasses.replace(spec, allow_plaintext_auth=True).auth_requires_tls
    assert not dataclasses.replace(spec, host="127.0.0.1").auth_requires_tls
    assert not dataclasses.replace(spec, host="::1").auth_requires_tls
    assert dataclasses.replace(spec, host="0.0.0.0").auth_requires_tls
    assert not dataclasses.replace(spec, implicit_tls=object()).auth_requires_tls  # type: ignore[arg-type]


async def test_implicit_tls_port(
    submission: Submission, start_listener: Callable[..., object]
) -> None:
    assert submission.tls is not None
    context = submission.tls.server_context
    listener = await start_listener(  # type: ignore[misc]
        starttls=None, implicit_tls=context, host="0.0.0.0"
    )
    client_context = submission.tls.client_context()

    def over_tls() -> int:
        with smtplib.SMTP_SSL("127.0.0.1", listener.port, context=client_context, timeout=15) as c:
            return c.login("apikey", SEND_KEY)[0]

    assert await in_thread(over_tls) == 235
