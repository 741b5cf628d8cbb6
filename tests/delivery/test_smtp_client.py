"""SmtpClient (our own pipelining SMTP client) against aiosmtpd, and a scripted fake server.

aiosmtpd is the real thing for round trips, TLS and AUTH; the fake (below) says what
aiosmtpd cannot be made to say: multi-line and malformed replies, overlong lines, 421,
hang-ups mid-transaction, a 354 after every recipient was refused.
"""

from __future__ import annotations

import asyncio
import base64
import ssl
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, Session

from odiseo.domain.models import Refusal
from odiseo.errors import PermanentFailure, TransientFailure
from odiseo.providers.smtp._client import (
    AuthError,
    Disconnected,
    ProtocolError,
    RecipientsRefused,
    ReplyError,
    SmtpClient,
    SmtpTimeout,
    TlsUnavailable,
    parse_extensions,
)
from tests.support.smtp import SmtpServer
from tests.support.smtp_harness import (
    SmtpHarness,
    TrackingRecorder,
    connections,
    drop_connections,
    tracked,
)
from tests.support.tls import TlsMaterial

MESSAGE = b"From: a@odiseo.test\r\nTo: b@example.com\r\nSubject: hi\r\n\r\nHello\r\n"
Reply = str | bytes | None  # text (CRLF added), raw bytes, or None: hang up


# -- a scripted server --------------------------------------------------------------------------


@dataclass
class Fake:
    """A scripted SMTP server on the test's own loop; `replies` maps a verb to its answer.

    A list of answers is used up one per command, then the default applies. "BODY" is
    the reply after the message data.
    """

    extensions: tuple[str, ...] = ("PIPELINING",)
    replies: dict[str, Reply | list[Reply]] = field(default_factory=dict)
    lines: list[bytes] = field(default_factory=list)
    pipelined: list[bool] = field(default_factory=list)  # more was buffered when a line was read
    bodies: list[bytes] = field(default_factory=list)
    hang_up_after_421: bool = False  # as real servers do: say 421, then close
    connections: int = 0
    port: int = 0
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _writers: list[asyncio.StreamWriter] = field(default_factory=list)

    def answer(self, verb: str, default: str) -> Reply:
        reply = self.replies.get(verb, default)
        if isinstance(reply, list):
            reply = reply.pop(0) if reply else default
        return reply

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.append(writer)
        self.connections += 1
        try:
            if await self.say(writer, self.answer("GREETING", "220 fake ESMTP")):
                while (line := await reader.readline()) and await self.on(line, reader, writer):
                    pass
        except ConnectionError:
            pass  # the client dropped us, as some tests want it to
        writer.close()

    async def on(
        self, line: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bool:
        self.lines.append(line)
        self.pipelined.append(bool(reader._buffer))  # type: ignore[attr-defined]
        verb = line.split(b":")[0].split(b" ")[0].strip().upper().decode()
        ehlo = "\r\n".join(f"250-{e}" for e in ("fake", *self.extensions)) + "\r\n250 HELP"
        defaults = {"EHLO": ehlo, "QUIT": "221 bye", "DATA": "354 go on", "STARTTLS": "454 no"}
        reply = self.answer(verb, defaults.get(verb, "250 2.0.0 ok"))
        if not await self.say(writer, reply):
            return False
        if self.hang_up_after_421 and isinstance(reply, str) and reply.startswith("421"):
            return False
        if verb == "DATA" and isinstance(reply, str) and reply.startswith("354"):
            body = b""
            while (chunk := await reader.readline()) not in (b".\r\n", b""):
                body += chunk
            self.bodies.append(body)
            return await self.say(writer, self.answer("BODY", "250 2.0.0 queued"))
        return verb != "QUIT"

    @staticmethod
    async def say(writer: asyncio.StreamWriter, reply: Reply) -> bool:
        if reply is None:
            return False
        writer.write(reply if isinstance(reply, bytes) else reply.encode() + b"\r\n")
        await writer.drain()
        return True

    def commands(self) -> list[str]:
        return [line.decode().strip() for line in self.lines]

    async def close(self) -> None:
        for writer in self._writers:
            writer.close()
        if self._tasks:  # closed, each handler sees EOF and returns
            await asyncio.wait(self._tasks, timeout=2)


@pytest.fixture
async def fake() -> AsyncIterator[Callable[..., Any]]:
    """Start fake servers (and clients to them) for one test; close them all after."""
    servers: list[tuple[asyncio.Server, Fake]] = []
    clients: list[SmtpClient] = []

    async def start(**kwargs: Any) -> tuple[Fake, SmtpClient]:
        script = Fake(**kwargs)
        server = await asyncio.start_server(script.handle, "127.0.0.1", 0)
        script.port = server.sockets[0].getsockname()[1]
        servers.append((server, script))
        clients.append(SmtpClient(host="127.0.0.1", port=script.port, timeout=2.0))
        return script, clients[-1]

    yield start
    for client in clients:
        client.close()
    for server, script in servers:
        await script.close()
        server.close()
        await server.wait_closed()


# -- pipelining -----------------------------------------------------------------------------------


async def test_envelope_goes_in_one_write_when_the_server_pipelines(fake: Any) -> None:
    server, client = await fake()
    await client.connect()

    result = await client.send(MESSAGE, sender="a@odiseo.test", recipients=["b@x.test", "c@x.test"])

    assert result.code == 250 and result.refused == ()
    mail_at = server.commands().index("MAIL FROM:<a@odiseo.test>")
    assert server.commands()[mail_at : mail_at + 4] == [
        "MAIL FROM:<a@odiseo.test>",
        "RCPT TO:<b@x.test>",
        "RCPT TO:<c@x.test>",
        "DATA",
    ]
    assert server.pipelined[mail_at : mail_at + 4] == [True, True, True, False]
    assert server.bodies == [MESSAGE]


async def test_commands_go_one_by_one_when_the_server_does_not_pipeline(fake: Any) -> None:
    server, client = await fake(extensions=("8BITMIME",))
    await client.connect()

    await client.send(MESSAGE, sender="a@odiseo.test", recipients=["b@x.test", "c@x.test"])

    assert not any(server.pipelined)
    assert server.bodies == [MESSAGE]


async def test_some_recipients_refused_in_a_pipeline_is_a_result(fake: Any) -> None:
    server, client = await fake(replies={"RCPT": ["550 5.1.1 gone", "250 ok"]})
    await client.connect()

    result = await client.send(MESSAGE, sender="a@odiseo.test", recipients=["x@x.test", "y@x.test"])

    assert [tuple(r) for r in result.refused] == [("x@x.test", 550, "5.1.1 gone")]
    assert server.bodies == [MESSAGE]


async def test_a_354_after_every_recipient_was_refused_gets_an_empty_end_and_rset(
    fake: Any,
) -> None:
    server, client = await fake(
        replies={"RCPT": ["550 5.1.1 gone"], "BODY": ["554 5.5.1 no valid recipients"]}
    )
    await client.connect()

    with pytest.raises(RecipientsRefused) as raised:
        await client.send(MESSAGE, sender="a@odiseo.test", recipients=["x@x.test"])

    assert raised.value.refusals == [("x@x.test", 550, "5.1.1 gone")]
    assert server.bodies == [b""]  # only the terminating dot: nothing of the message
    assert server.commands()[-1] == "RSET"
    assert client.is_usable
    assert (await client.send(MESSAGE, sender="a@odiseo.test", recipients=["y@x.test"])).code == 250


@pytest.mark.parametrize("pipelining", [True, False])
async def test_a_refused_sender_resets_and_keeps_the_session(fake: Any, pipelining: bool) -> None:
    extensions = ("PIPELINING",) if pipelining else ()
    server, client = await fake(extensions=extensions, replies={"MAIL": ["553 5.1.8 bad sender"]})
    await client.connect()

    with pytest.raises(ReplyError) as raised:
        await client.send(MESSAGE, sender="a@odiseo.test", recipients=["x@x.test"])

    assert (raised.value.code, raised.value.command) == (553, "MAIL")
    assert server.commands()[-1] == "RSET"
    assert MESSAGE not in server.bodies  # this naive fake says 354 anyway: we end it empty
    assert client.is_usable


# -- replies --------------------------------------------------------------------------------------


async def test_multi_line_replies_are_joined_and_extensions_parsed(fake: Any) -> None:
    server, client = await fake(
        extensions=("PIPELINING", "size 1000000", "auth=LOGIN", "8bitmime"),
        replies={"BODY": "250-2.0.0 queued as A1\r\n250-second line\r\n250 third"},
    )
    await client.connect()

    result = await client.send(MESSAGE, sender="a@odiseo.test", recipients=["b@x.test"])

    assert result.message == "2.0.0 queued as A1\nsecond line\nthird"
    assert client.extensions["SIZE"] == "1000000" and client.extensions["AUTH"] == "LOGIN"
    assert "8BITMIME" in client.extensions
    assert server.commands()[-3].startswith("MAIL FROM:<a@odiseo.test> SIZE=")


def test_extensions_keep_old_and_new_style_auth() -> None:
    reply = "fake\nAUTH LOGIN\nAUTH=PLAIN\nSTARTTLS\n"
    assert parse_extensions(reply) == {"AUTH": "LOGIN PLAIN", "STARTTLS": ""}


@pytest.mark.parametrize(
    "reply",
    [b"hello there\r\n", b"25\r\n", b"250-" + b"x" * 9000 + b"\r\n", b"2" * 20000],
    ids=["no-code", "short", "overlong-line", "endless-line"],
)
async def test_a_reply_that_is_not_smtp_is_a_protocol_error(fake: Any, reply: bytes) -> None:
    _server, client = await fake(replies={"MAIL": reply})
    await client.connect()

    with pytest.raises(ProtocolError):
        await client.send(MESSAGE, sender="a@odiseo.test", recipients=["b@x.test"])

    assert not client.is_usable and not client.is_connected


async def test_a_malformed_greeting_fails_the_connect(fake: Any) -> None:
    _server, client = await fake(replies={"GREETING": "HTTP/1.1 400 Bad Request"})

    with pytest.raises(ProtocolError, match="malformed"):
        await client.connect()


async def test_a_421_marks_the_connection_unusable(fake: Any) -> None:
    _server, client = await fake(replies={"MAIL": ["421 4.3.2 shutting down"]})
    await client.connect()

    with pytest.raises(ReplyError) as raised:
        await client.send(MESSAGE, sender="a@odiseo.test", recipients=["b@x.test"])

    assert raised.value.code == 421
    assert not client.is_usable


async def test_a_421_before_the_server_hangs_up_is_not_lost(fake: Any) -> None:
    """Gmail and Postfix say 421 and close at once: with the envelope pipelined, the
    client meets the end of the connection while it waits for the other replies."""
    gmail = "421 4.7.28 [203.0.113.5] unusual rate of unsolicited mail - gsmtp"
    _server, client = await fake(replies={"MAIL": [gmail]}, hang_up_after_421=True)
    await client.connect()
    with pytest.raises(ReplyError) as at_mail:
        await client.send(MESSAGE, sender="a@odiseo.test", recipients=["b@x.test"])
    assert (at_mail.value.code, at_mail.value.command) == (421, "MAIL")
    assert at_mail.value.message == gmail[4:] and not client.is_usable

    _server, client = await fake(replies={"RCPT": ["250 ok", gmail]}, hang_up_after_421=True)
    await client.connect()
    with pytest.raises(RecipientsRefused) as at_rcpt:
        await client.send(MESSAGE, sender="a@odiseo.test", recipients=["b@x.test", "c@gmail.com"])
    assert [(r.recipient, r.code) for r in at_rcpt.value.refusals] == [("c@gmail.com", 421)]

    _server, client = await fake(replies={"DATA": [gmail]}, hang_up_after_421=True)
    await client.connect()
    with pytest.raises(ReplyError) as at_data:
        await client.send(MESSAGE, sender="a@odiseo.test", recipients=["b@x.test"])
    assert (at_data.value.code, at_data.value.command) == (421, "DATA")

    # Without PIPELINING too, a 421 at RCPT is not lost to the next command.
    _server, client = await fake(
        extensions=(), replies={"RCPT": ["250 ok", gmail]}, hang_up_after_421=True
    )
    await client.connect()
    with pytest.raises(RecipientsRefused) as stepwise:
        await client.send(MESSAGE, sender="a@odiseo.test", recipients=["b@x.test", "c@gmail.com"])
    assert [(r.recipient, r.code) for r in stepwise.value.refusals] == [("c@gmail.com", 421)]

    # A hang-up with no 421 before it stays a disconnection.
    _server, client = await fake(replies={"RCPT": [None]})
    await client.connect()
    with pytest.raises(Disconnected):
        await client.send(MESSAGE, sender="a@odiseo.test", recipients=["b@x.test"])


async def test_an_unasked_reply_while_idle_marks_the_connection_unusable(fake: Any) -> None:
    _server, client = await fake(replies={"NOOP": "250 ok\r\n421 4.4.2 idle timeout"})
    await client.connect()

    await client.noop()
    await asyncio.sleep(0.05)

    assert not client.is_usable


async def test_helo_when_the_server_does_not_know_ehlo(fake: Any) -> None:
    server, client = await fake(replies={"EHLO": "502 5.5.2 what?"})
    await client.connect()

    await client.send(MESSAGE, sender="a@odiseo.test", recipients=["b@x.test"])

    assert server.commands()[1].startswith("HELO ")
    assert client.extensions == {} and not any(server.pipelined)


# -- hang-ups and timeouts ------------------------------------------------------------------------


async def test_a_hang_up_before_the_data_says_nothing_was_written(fake: Any) -> None:
    _server, client = await fake(replies={"DATA": None})
    await client.connect()

    with pytest.raises(Disconnected) as raised:
        await client.send(MESSAGE, sender="a@odiseo.test", recipients=["b@x.test"])

    assert raised.value.data_written is False
    assert not client.is_connected


async def test_a_hang_up_after_the_data_says_it_was_written(fake: Any) -> None:
    server, client = await fake(replies={"BODY": None})
    await client.connect()

    with pytest.raises(Disconnected) as raised:
        await client.send(MESSAGE, sender="a@odiseo.test", recipients=["b@x.test"])

    assert raised.value.data_written is True
    assert server.bodies == [MESSAGE]


async def test_a_silent_server_times_out_and_the_connection_is_dropped(fake: Any) -> None:
    _server, client = await fake(replies={"BODY": b""})  # answers nothing to the data
    client.timeout = 0.3
    await client.connect()

    with pytest.raises(SmtpTimeout):
        await client.send(MESSAGE, sender="a@odiseo.test", recipients=["b@x.test"])

    assert not client.is_connected


async def test_cancelled_mid_transaction_drops_the_connection(fake: Any) -> None:
    _server, client = await fake(replies={"BODY": b""})
    await client.connect()
    sending = asyncio.ensure_future(
        client.send(MESSAGE, sender="a@odiseo.test", recipients=["b@x.test"])
    )
    await asyncio.sleep(0.1)

    sending.cancel()
    with pytest.raises(asyncio.CancelledError):
        await sending

    assert not client.is_usable


# -- the message on the wire ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "arrives"),
    [
        (b".first\r\nX: y\r\n\r\n.body\r\n..two\r\n.\r\nend\r\n", None),
        (
            b"Subject: x\n\nline1\nline2\rline3\r\nlast",
            b"Subject: x\r\n\r\nline1\r\nline2\r\nline3\r\nlast\r\n",
        ),
        (b"Subject: x\r\n\r\n.\n.hidden\n", b"Subject: x\r\n\r\n.\r\n.hidden\r\n"),
    ],
    ids=["dot-stuffing", "bare-lf-and-cr", "dots-and-bare-lf"],
)
async def test_the_message_arrives_intact(
    smtp: SmtpHarness, data: bytes, arrives: bytes | None
) -> None:
    server = smtp.server()
    client = SmtpClient(host="127.0.0.1", port=server.port, timeout=5)
    await client.connect()
    try:
        await client.send(data, sender="a@odiseo.test", recipients=["b@example.com"])
    finally:
        await client.quit()

    (got,) = server.received
    assert got.data == (arrives or data)


async def test_a_message_over_the_size_limit_is_refused_before_sending(fake: Any) -> None:
    server, client = await fake(extensions=("PIPELINING", "SIZE 100"))
    await client.connect()

    with pytest.raises(ReplyError) as raised:
        await client.send(MESSAGE + b"x" * 100, sender="a@odiseo.test", recipients=["b@x.test"])

    assert raised.value.code == 552 and "SIZE" in raised.value.message
    assert not any(c.startswith("MAIL") for c in server.commands())
    assert client.is_usable
    await client.send(MESSAGE, sender="a@odiseo.test", recipients=["b@x.test"])
    assert server.commands()[-3] == f"MAIL FROM:<a@odiseo.test> SIZE={len(MESSAGE)}"


async def test_an_address_smtp_cannot_carry_is_refused_before_sending(fake: Any) -> None:
    server, client = await fake()
    await client.connect()

    with pytest.raises(ReplyError) as raised:
        await client.send(MESSAGE, sender="a@odiseo.test", recipients=["b@x.test\r\nRSET"])

    assert raised.value.code == 553
    assert not any(c.startswith("MAIL") for c in server.commands())


async def test_8bit_data_is_announced_when_the_server_takes_it(fake: Any) -> None:
    server, client = await fake(extensions=("PIPELINING", "8BITMIME"))
    await client.connect()

    await client.send(
        "Subject: ñ\r\n\r\nñ\r\n".encode(), sender="a@o.test", recipients=["b@x.test"]
    )

    assert "MAIL FROM:<a@o.test> BODY=8BITMIME" in server.commands()


# -- TLS and AUTH against aiosmtpd ----------------------------------------------------------------


def client_tls(tls: TlsMaterial) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(tls.ca_file))


async def test_starttls_then_delivers(smtp: SmtpHarness, tls: TlsMaterial) -> None:
    server = smtp.server(tls_context=tls.server_context)  # refuses MAIL before STARTTLS
    client = SmtpClient(
        host="127.0.0.1", port=server.port, tls_context=client_tls(tls), start_tls=True
    )
    await client.connect()
    try:
        await client.send(MESSAGE, sender="a@odiseo.test", recipients=["b@example.com"])
    finally:
        await client.quit()

    assert len(server.received) == 1
    assert "STARTTLS" not in client.extensions  # the EHLO after TLS


async def test_implicit_tls_delivers(smtp: SmtpHarness, tls: TlsMaterial) -> None:
    server = smtp.server(tls_context=tls.server_context, implicit_tls=True)
    client = SmtpClient(
        host="127.0.0.1", port=server.port, tls_context=client_tls(tls), implicit_tls=True
    )
    await client.connect()
    try:
        await client.send(MESSAGE, sender="a@odiseo.test", recipients=["b@example.com"])
    finally:
        await client.quit()

    assert len(server.received) == 1


async def test_starttls_not_offered_is_an_error(fake: Any, tls: TlsMaterial) -> None:
    server, _ = await fake()
    client = SmtpClient(
        host="127.0.0.1", port=server.port, tls_context=client_tls(tls), start_tls=True
    )
    with pytest.raises(TlsUnavailable):
        await client.connect()
    assert not client.is_connected


async def test_plaintext_injected_after_the_starttls_reply_is_refused(
    fake: Any, tls: TlsMaterial
) -> None:
    server, _ = await fake(
        extensions=("STARTTLS",), replies={"STARTTLS": "220 go ahead\r\n250 injected"}
    )
    client = SmtpClient(
        host="127.0.0.1", port=server.port, tls_context=client_tls(tls), start_tls=True
    )
    with pytest.raises(ProtocolError):
        await client.connect()
    assert not client.is_connected


class AuthServer:
    """aiosmtpd with AUTH in the clear (no TLS here), noting the mechanisms used."""

    def __init__(self, smtp: SmtpHarness, *, exclude: list[str]) -> None:
        self.mechanisms: list[str] = []
        self.server = tracked(SmtpServer())
        self.server.controller.SMTP_kwargs.update(
            authenticator=self.check,
            auth_require_tls=False,
            auth_exclude_mechanism=exclude,
        )
        self.server.__enter__()
        smtp.servers.append(self.server)

    def check(self, _server: Any, _session: Any, _envelope: Any, mechanism: str, data: Any) -> Any:
        self.mechanisms.append(mechanism)
        ok = (data.login, data.password) == (b"user", b"s3cret-pw")
        return AuthResult(success=ok, handled=False)


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
async def test_login_with_each_mechanism(smtp: SmtpHarness, mechanism: str) -> None:
    auth = AuthServer(smtp, exclude=[m for m in ("PLAIN", "LOGIN") if m != mechanism])
    client = SmtpClient(
        host="127.0.0.1", port=auth.server.port, username="user", password="s3cret-pw"
    )
    await client.connect()
    try:
        await client.send(MESSAGE, sender="a@odiseo.test", recipients=["b@example.com"])
    finally:
        await client.quit()

    assert auth.mechanisms == [mechanism]
    assert len(auth.server.received) == 1


def secrets_of(username: str, password: str) -> list[str]:
    plain = base64.b64encode(f"\0{username}\0{password}".encode()).decode()
    return [password, plain, base64.b64encode(password.encode()).decode()]


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
async def test_a_refused_login_never_shows_the_secret(smtp: SmtpHarness, mechanism: str) -> None:
    auth = AuthServer(smtp, exclude=[m for m in ("PLAIN", "LOGIN") if m != mechanism])
    client = SmtpClient(
        host="127.0.0.1", port=auth.server.port, username="user", password="Wr0ng-pa55"
    )
    with pytest.raises(AuthError) as raised:
        await client.connect()

    assert raised.value.code == 535
    for secret in secrets_of("user", "Wr0ng-pa55"):
        assert secret not in str(raised.value) and secret not in repr(raised.value)
    assert "Wr0ng" not in repr(client)


@pytest.mark.parametrize(
    "reply",
    ["535 5.7.8 bad credentials: {line}", "{line}"],
    ids=["echoed-in-a-refusal", "echoed-as-garbage"],
)
async def test_a_server_echoing_our_credentials_does_not_leak_them(fake: Any, reply: str) -> None:
    server, _ = await fake(extensions=("AUTH PLAIN",))
    secrets = secrets_of("user", "pa55word")
    server.replies["AUTH"] = reply.format(line=f"AUTH PLAIN {secrets[1]}")
    client = SmtpClient(host="127.0.0.1", port=server.port, username="user", password="pa55word")

    with pytest.raises((AuthError, ProtocolError)) as raised:
        await client.connect()

    for secret in secrets:
        assert secret not in str(raised.value) and secret not in repr(raised.value)


async def test_credentials_without_auth_offered_is_an_auth_error(fake: Any) -> None:
    server, _ = await fake()
    client = SmtpClient(host="127.0.0.1", port=server.port, username="user", password="pw")

    with pytest.raises(AuthError) as raised:
        await client.connect()

    assert raised.value.code is None
    assert "pw" not in str(raised.value)


# -- the provider over a pipelining server --------------------------------------------------------


class PipeliningRecorder(TrackingRecorder):
    """aiosmtpd takes pipelined commands; this makes it say so."""

    async def handle_EHLO(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        responses = await super().handle_EHLO(server, session, envelope, hostname, responses)
        return [*responses[:-1], "250-PIPELINING", responses[-1]]


def pipelining_server(smtp: SmtpHarness) -> SmtpServer:
    server = SmtpServer()
    server.handler = server.controller.handler = PipeliningRecorder()
    server.__enter__()
    smtp.servers.append(server)
    return server


async def test_provider_over_pipelining_refusals_keep_the_connection(smtp: SmtpHarness) -> None:
    server = pipelining_server(smtp)
    server.handler.rcpt_replies = {"gone@example.com": "550 5.1.1 No such user"}
    provider = smtp.provider(server.port)

    receipt = await provider.deliver(
        MESSAGE,
        sender="a@odiseo.test",
        recipients=["ok@example.com", "gone@example.com"],
        message_id="1",
    )
    with pytest.raises(PermanentFailure) as raised:
        await provider.deliver(
            MESSAGE, sender="a@odiseo.test", recipients=["gone@example.com"], message_id="2"
        )
    server.handler.data_reply = "451 4.3.0 try again in 2 minutes"
    with pytest.raises(TransientFailure) as deferred:
        await provider.deliver(
            MESSAGE, sender="a@odiseo.test", recipients=["ok@example.com"], message_id="3"
        )

    assert provider._client is not None and provider._client.extensions.get("PIPELINING") == ""
    assert receipt.refused == (
        Refusal(
            recipient="gone@example.com",
            code=550,
            response="550 5.1.1 No such user",
            permanent=True,
        ),
    )
    assert raised.value.reason == "recipients_refused"
    assert (deferred.value.code, deferred.value.retry_after) == (451, 120)
    assert [r.recipients for r in server.received] == [["ok@example.com"]]
    assert connections(server) == 1


async def test_provider_over_pipelining_reconnects_once_after_a_hang_up(
    smtp: SmtpHarness,
) -> None:
    server = pipelining_server(smtp)
    provider = smtp.provider(server.port)
    await provider.deliver(MESSAGE, sender="a@odiseo.test", recipients=["b@x.test"], message_id="1")

    drop_connections(server)
    receipt = await provider.deliver(
        MESSAGE, sender="a@odiseo.test", recipients=["b@x.test"], message_id="2"
    )

    assert receipt.code == 250
    assert len(server.received) == 2 and connections(server) == 2


async def test_provider_does_not_resend_when_the_server_hung_up_after_the_data(
    fake: Any, smtp: SmtpHarness
) -> None:
    server, _ = await fake(replies={"BODY": ["250 2.0.0 queued", None]})
    provider = smtp.provider(server.port)
    await provider.deliver(MESSAGE, sender="a@odiseo.test", recipients=["b@x.test"], message_id="1")

    with pytest.raises(TransientFailure) as raised:
        await provider.deliver(
            MESSAGE, sender="a@odiseo.test", recipients=["b@x.test"], message_id="2"
        )

    assert raised.value.reason == "connection"
    assert len(server.bodies) == 2 and server.connections == 1  # no second copy sent


async def test_provider_reconnects_when_the_server_said_goodbye_while_idle(
    fake: Any, smtp: SmtpHarness
) -> None:
    server, _ = await fake(replies={"BODY": ["250 2.0.0 queued\r\n421 4.4.2 idle timeout"]})
    provider = smtp.provider(server.port)
    await provider.deliver(MESSAGE, sender="a@odiseo.test", recipients=["b@x.test"], message_id="1")
    await asyncio.sleep(0.05)

    receipt = await provider.deliver(
        MESSAGE, sender="a@odiseo.test", recipients=["b@x.test"], message_id="2"
    )

    assert receipt.code == 250
    assert server.connections == 2


async def test_a_refused_data_command_in_a_pipeline_resets_and_keeps_the_session(
    fake: Any,
) -> None:
    server, client = await fake(replies={"DATA": ["451 4.3.0 try again in 30 s"]})
    await client.connect()

    with pytest.raises(ReplyError) as raised:
        await client.send(MESSAGE, sender="a@odiseo.test", recipients=["b@x.test"])

    assert (raised.value.code, raised.value.command) == (451, "DATA")
    assert server.commands()[-1] == "RSET" and server.bodies == []
    assert (await client.send(MESSAGE, sender="a@odiseo.test", recipients=["b@x.test"])).code == 250
    assert server.connections == 1
