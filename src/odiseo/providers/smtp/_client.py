"""A lean asyncio SMTP client with PIPELINING (RFC 2920), for one job: much mail, few connections.

Written for this project instead of aiosmtplib, which makes a round trip per
command and normalises line ends with a regular expression (bench/README.md has
the CPU it cost). Here a message costs two round trips — MAIL, RCPT… and DATA in
one write, then the body — and a few scans of its bytes.

Like httpcore under httpx, this module and `_wire.py` import nothing else of
odiseo (an import-linter contract in pyproject.toml keeps it so): they report
what the server said as their own small family of errors (`_wire.py`), and
`smtp.py` decides, in one function, what each means for the message.

Decisions: a message larger than the server's SIZE limit, or an address SMTP cannot
carry (control or non-ASCII characters: we do not speak SMTPUTF8), is refused here,
before anything is sent, as a 552 or 553 ReplyError. Every refusal is followed by RSET
so the session stays usable; anything else (EOF, 421, a garbled reply, a timeout,
cancellation) closes the connection.
"""

from __future__ import annotations

import asyncio
import base64
import re
import socket
import ssl
from collections.abc import Coroutine, Sequence
from typing import Any, TypeVar, cast

from ._wire import (
    AuthError,
    Disconnected,
    ProtocolError,
    RecipientsRefused,
    Refusal,
    Reply,
    ReplyError,
    SendResult,
    SmtpError,
    SmtpTimeout,
    TlsUnavailable,
    Wire,
)

_LINE_END = re.compile(rb"\r\n|\n|\r")
_HOSTNAME = re.compile(r"[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+")
T = TypeVar("T")

__all__ = [
    "AuthError",
    "Disconnected",
    "ProtocolError",
    "RecipientsRefused",
    "Refusal",
    "Reply",
    "ReplyError",
    "SendResult",
    "SmtpClient",
    "SmtpError",
    "SmtpTimeout",
    "TlsUnavailable",
]


class SmtpClient:
    """One SMTP session: connect (TLS, EHLO, AUTH) once, then send message after message.

    One operation at a time: the provider's pool gives each connection to one task.
    """

    def __init__(
        self,
        *,
        host: str,
        port: int,
        timeout: float = 30.0,
        tls_context: ssl.SSLContext | None = None,
        implicit_tls: bool = False,
        start_tls: bool = False,
        username: str | None = None,
        password: str | None = None,
    ) -> None:
        if (implicit_tls or start_tls) and tls_context is None:
            raise ValueError("TLS needs a tls_context")
        self.host, self.port, self.timeout = host, port, timeout
        self.implicit_tls = implicit_tls
        self.start_tls = start_tls and not implicit_tls
        self._tls_context = tls_context
        self._credentials = None if username is None or password is None else (username, password)
        self.extensions: dict[str, str] = {}  # EHLO keyword (upper case) -> parameters
        self._wire: Wire | None = None

    def __repr__(self) -> str:
        return f"SmtpClient({self.host}:{self.port}, connected={self.is_connected})"

    @property
    def is_connected(self) -> bool:
        wire = self._wire
        return wire is not None and wire.failure is None and wire.transport is not None

    @property
    def is_usable(self) -> bool:
        """Connected, in step with the server, and not told to go away: fit for a message."""
        return self._wire is not None and self._wire.usable

    @property
    def size_limit(self) -> int | None:
        """The server's SIZE (0: no fixed limit), or None when it does not speak SIZE."""
        size = self.extensions.get("SIZE")
        return None if size is None else int(size) if size.isdigit() else 0

    async def connect(self) -> None:
        """Open the session: greeting, EHLO, STARTTLS and login as configured."""
        await self._guarded("connect", self._open(), keep=False)

    async def _open(self) -> None:
        loop = asyncio.get_running_loop()
        wire = self._wire = Wire(loop)
        context = self._tls_context if self.implicit_tls else None
        hostname = self.host if context else None
        await loop.create_connection(
            lambda: wire, self.host, self.port, ssl=context, server_hostname=hostname
        )
        (greeting,) = await wire.read(1)
        if greeting.code != 220:
            raise ReplyError(*greeting, command="connect")
        await self._hello(wire)
        if self.start_tls:
            await self._starttls(wire, loop)
        if self._credentials is not None:
            username, password = self._credentials
            await self._login(wire, username=username, password=password)

    async def _hello(self, wire: Wire) -> None:
        name = await _local_name(wire)
        reply = await self._command(f"EHLO {name}")
        self.extensions = {}
        if 500 <= reply.code < 600:  # an SMTP-only server: HELO, and no extensions
            reply = await self._command(f"HELO {name}")
            if reply.code != 250:
                raise ReplyError(*reply, command="HELO")
        elif reply.code == 250:
            self.extensions = parse_extensions(reply.message)
        else:
            raise ReplyError(*reply, command="EHLO")

    async def _starttls(self, wire: Wire, loop: asyncio.AbstractEventLoop) -> None:
        if "STARTTLS" not in self.extensions:
            raise TlsUnavailable()
        reply = await self._command("STARTTLS")
        if reply.code != 220:
            raise ReplyError(*reply, command="STARTTLS")
        if not wire.quiet:  # plaintext after the 220 would be read as if it came over TLS
            raise ProtocolError("the server sent more after its STARTTLS reply")
        assert wire.transport is not None and self._tls_context is not None
        transport = await loop.start_tls(
            wire.transport, wire, self._tls_context, server_hostname=self.host
        )
        wire.transport = cast(asyncio.Transport, transport)
        await self._hello(wire)

    async def _login(self, wire: Wire, *, username: str, password: str) -> None:
        """AUTH PLAIN, else LOGIN. Nothing secret ever reaches an exception's text."""
        mechanisms = self.extensions.get("AUTH", "").upper().split()
        plain, hidden = _b64(f"\0{username}\0{password}"), _b64(password)
        wire.redact = True
        if "PLAIN" in mechanisms:
            reply = await self._command(f"AUTH PLAIN {plain}")
            if reply.code == 334:  # the server wants the initial response on its own line
                reply = await self._command(plain)
        elif "LOGIN" in mechanisms:
            reply = await self._command("AUTH LOGIN")
            for answer in (_b64(username), hidden):
                if reply.code == 334:
                    reply = await self._command(answer)
        else:
            offered = " ".join(mechanisms) or "none"
            raise AuthError(None, f"no AUTH mechanism we speak (PLAIN, LOGIN); offered: {offered}")
        wire.redact = False
        if reply.code != 235:
            message = reply.message
            for secret in filter(None, (plain, hidden, password)):  # in case the server echoes
                message = message.replace(secret, "***")
            raise AuthError(reply.code, message)

    async def _command(self, line: str) -> Reply:
        assert self._wire is not None
        self._wire.write(line.encode("ascii") + b"\r\n", replies=1)
        return (await self._wire.read(1))[0]

    async def send(self, data: bytes, *, sender: str, recipients: Sequence[str]) -> SendResult:
        """Hand one message over; some recipients refused is a result, all refused an error.

        Raises:
            ReplyError, RecipientsRefused: a refusal; the session stays usable.
            Disconnected, ProtocolError, SmtpTimeout: the connection is closed.
        """
        wire = self._wire
        if wire is None or not wire.usable:  # nothing of this message was written
            why = (wire.failure or "the server is closing it") if wire else "not connected"
            raise Disconnected(str(why))
        if not recipients:
            raise ValueError("a message needs at least one recipient")
        payload, size = _payload(data)
        mail = self._mail_command(sender, recipients, size=size, eight_bit=not data.isascii())
        wire.data_written = False
        step = self._pipelined if "PIPELINING" in self.extensions else self._stepwise
        return await self._guarded("send", step(wire, payload, mail=mail, recipients=recipients))

    def _mail_command(
        self, sender: str, recipients: Sequence[str], *, size: int, eight_bit: bool
    ) -> str:
        for address in (sender, *recipients):
            if not (address.isascii() and address.isprintable()):
                text = f"5.1.3 address SMTP cannot carry: {address!r}"
                raise ReplyError(553, text, command="MAIL")
        command = f"MAIL FROM:<{sender}>"
        if (limit := self.size_limit) is not None:
            if 0 < limit < size:
                text = f"5.3.4 message of {size} bytes exceeds the server's SIZE of {limit}"
                raise ReplyError(552, text, command="MAIL")
            command += f" SIZE={size}"
        if eight_bit and "8BITMIME" in self.extensions:
            command += " BODY=8BITMIME"
        return command

    async def _pipelined(
        self, wire: Wire, payload: bytes, *, mail: str, recipients: Sequence[str]
    ) -> SendResult:
        count = len(recipients)
        rcpts = "".join(f"RCPT TO:<{r}>\r\n" for r in recipients)
        wire.write(f"{mail}\r\n{rcpts}DATA\r\n".encode("ascii"), replies=count + 2)
        try:
            replies = await wire.read(count + 2)
        except Disconnected:
            closing = _closing_reply(list(wire.replies), recipients)
            if closing is None:
                raise
            self.close()
            raise closing from None
        refused = [
            Refusal(address, *reply)
            for address, reply in zip(recipients, replies[1:-1], strict=True)
            if not 200 <= reply.code < 300
        ]
        error = _envelope_error(replies[0], refused, count=count, data=replies[-1])
        if error is None:
            return await self._body(wire, payload, refused=refused)
        waiting = replies[-1].code == 354
        if waiting:  # nobody to deliver to, yet the server waits for a body: end it empty
            wire.write(b".\r\n", replies=1)
        raise await self._refused(error, wire, pending=waiting)

    async def _stepwise(
        self, wire: Wire, payload: bytes, *, mail: str, recipients: Sequence[str]
    ) -> SendResult:
        reply = await self._command(mail)
        if not 200 <= reply.code < 300:
            raise await self._refused(ReplyError(*reply, command="MAIL"), wire)
        refused = []
        for address in recipients:
            reply = await self._command(f"RCPT TO:<{address}>")
            if reply.code == 421:  # the server is closing: nothing more can be said
                self.close()
                raise RecipientsRefused([Refusal(address, *reply)])
            if not 200 <= reply.code < 300:
                refused.append(Refusal(address, *reply))
        if len(refused) == len(recipients):
            raise await self._refused(RecipientsRefused(refused), wire)
        reply = await self._command("DATA")
        if reply.code != 354:
            raise await self._refused(ReplyError(*reply, command="DATA"), wire)
        return await self._body(wire, payload, refused=refused)

    async def _body(self, wire: Wire, payload: bytes, *, refused: list[Refusal]) -> SendResult:
        wire.data_written = True
        wire.write(payload, replies=1)
        await wire.drain()
        (reply,) = await wire.read(1)
        wire.data_written = False  # answered: the server's word, not a lost connection, decides
        if reply.code != 250:
            raise await self._refused(ReplyError(*reply, command="DATA"), wire)
        return SendResult(code=reply.code, message=reply.message, refused=tuple(refused))

    async def _refused(self, error: SmtpError, wire: Wire, *, pending: bool = False) -> SmtpError:
        """Bring the session back in step (RSET) after a refusal, or close it; give `error` back."""
        try:
            if pending:  # the reply to the lone "." sent after an unwanted 354
                await wire.read(1)
            if wire.usable and (await self._command("RSET")).code == 250:
                return error
        except SmtpError:
            pass
        self.close()
        return error

    async def noop(self) -> Reply:
        return await self._simple("NOOP")

    async def _simple(self, command: str) -> Reply:
        reply = await self._guarded(command, self._command(command))
        if not 200 <= reply.code < 300:
            raise ReplyError(*reply, command=command)
        return reply

    async def quit(self) -> None:
        """Say goodbye if the session is usable (within 5 s at most), then close."""
        try:
            if self._wire is not None and self._wire.usable:
                async with asyncio.timeout(min(self.timeout, 5.0)):
                    await self._command("QUIT")
        except (SmtpError, OSError, TimeoutError):
            pass
        finally:
            self.close()

    def close(self) -> None:
        """Drop the connection at once (no QUIT)."""
        wire, self._wire = self._wire, None
        if wire is not None and wire.transport is not None:
            wire.transport.abort()

    async def _guarded(
        self, what: str, operation: Coroutine[Any, Any, T], *, keep: bool = True
    ) -> T:
        """One deadline for a whole operation; anything but a kept refusal closes the connection."""
        try:
            async with asyncio.timeout(self.timeout):
                return await operation
        except (ReplyError, RecipientsRefused):
            if not keep:
                self.close()
            raise  # the server's answer: _refused() has reset the session or closed it
        except TimeoutError:
            self.close()
            raise SmtpTimeout(f"{what}: no reply within {self.timeout:g} s") from None
        except BaseException:
            self.close()  # disconnected, garbled or cancelled: the session state is unknown
            raise


def _closing_reply(replies: list[Reply], recipients: Sequence[str]) -> SmtpError | None:
    """The 421 a server said before it hung up mid-envelope (Gmail's 421 4.7.28, a
    Postfix 421 4.7.0 "too many connections"), as a refusal of the command it answered,
    so that what it said is not lost to the disconnection."""
    for index, reply in enumerate(replies):
        if reply.code != 421:
            continue
        if index == 0:
            return ReplyError(*reply, command="MAIL")
        if index <= len(recipients):
            return RecipientsRefused([Refusal(recipients[index - 1], *reply)])
        return ReplyError(*reply, command="DATA")
    return None


def _envelope_error(
    mail: Reply, refused: list[Refusal], *, count: int, data: Reply
) -> SmtpError | None:
    """Why the pipelined envelope failed, in the order the server would have said it."""
    if not 200 <= mail.code < 300:
        return ReplyError(*mail, command="MAIL")
    if len(refused) == count:
        return RecipientsRefused(refused)
    if data.code != 354:
        return ReplyError(*data, command="DATA")
    return None


_fqdn: str | None = None


async def _local_name(wire: Wire) -> str:
    """Our EHLO name: the FQDN if it looks like one, else our address literal (RFC 5321 4.1.4)."""
    global _fqdn
    if _fqdn is None:  # may ask DNS: once per process, off the event loop
        name = await asyncio.to_thread(socket.getfqdn)
        _fqdn = name if _HOSTNAME.fullmatch(name) and not name.startswith("localhost") else ""
    if _fqdn:
        return _fqdn
    address = wire.transport.get_extra_info("sockname") if wire.transport else None
    host = str(address[0]) if address else "127.0.0.1"
    return f"[IPv6:{host}]" if ":" in host else f"[{host}]"


def parse_extensions(reply: str) -> dict[str, str]:
    """EHLO keywords (upper case) to their parameters; an old-style AUTH= joins AUTH."""
    extensions: dict[str, str] = {}
    for line in reply.split("\n")[1:]:
        keyword, _, params = line.strip().partition(" ")
        keyword = keyword.upper()
        if keyword.startswith("AUTH="):
            keyword, params = "AUTH", f"{keyword[5:]} {params}"
        if keyword == "AUTH":
            params = f"{extensions.get('AUTH', '')} {params}"
        if keyword:
            extensions[keyword] = params.strip()
    return extensions


def _payload(data: bytes) -> tuple[bytes, int]:
    """The DATA payload (CRLF lines, dot-stuffed, terminated) and its RFC 1870 size.

    Every pass over the bytes counts for a large message: split + join + two memchr
    was the cheapest way found to prove there is no bare CR or LF (three counts cost
    more; bench/README.md, "Figures moved out of the code").
    """
    flat = b"".join(data.split(b"\r\n"))
    if b"\n" in flat or b"\r" in flat:  # a bare LF or CR somewhere: the slow path
        data = _LINE_END.sub(b"\r\n", data)
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    size = len(data)
    if data.startswith(b"."):
        data = b"." + data
    if b"\r\n." in data:
        data = data.replace(b"\r\n.", b"\r\n..")
    return data + b".\r\n", size


def _b64(text: str) -> str:
    return base64.b64encode(text.encode("utf-8")).decode("ascii")
