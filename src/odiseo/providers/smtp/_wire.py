"""The wire side of our SMTP client: replies cut from the byte stream, and the errors.

An asyncio.Protocol rather than streams: it notices a reply the server sends while
we are idle (Postfix's "421 timeout" before it hangs up), refuses bytes that arrive
between the STARTTLS reply and the handshake, and wakes the waiting task once per
batch of pipelined replies instead of once per line. `_client.py` speaks the
protocol over it; like it, this module imports nothing else of odiseo.
"""

from __future__ import annotations

import asyncio
import re
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple, cast

MAX_LINE = 8192  # one reply line; RFC 5321 allows 512, real servers stay far below this
MAX_REPLY = 65536  # one multi-line reply (an EHLO answer is a few hundred bytes)


# A reply's text ends up in logs and the database (where PostgreSQL refuses NUL):
# control characters other than tab become U+FFFD.
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


class Reply(NamedTuple):
    code: int
    message: str


class Refusal(NamedTuple):
    recipient: str
    code: int
    message: str


@dataclass(frozen=True, slots=True, kw_only=True)
class SendResult:
    """The server's final word on a message, and whom it refused while taking it for others."""

    code: int
    message: str
    refused: tuple[Refusal, ...]


class SmtpError(Exception):
    """The SMTP exchange failed.

    Not rooted in OdiseoError: these never leave providers/smtp/, where smtp.classify()
    turns them into DeliveryFailure. As there, the docstring's first line is the default message.
    """

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or "").splitlines()[0])


class ReplyError(SmtpError):
    """The server refused a command (or we did, for it: SIZE, bad address)."""

    def __init__(self, code: int, message: str, *, command: str) -> None:
        super().__init__(f"{command}: {code} {message}")
        self.code, self.message, self.command = code, message, command


class RecipientsRefused(SmtpError):
    """The server refused every recipient."""

    def __init__(self, refusals: Sequence[Refusal]) -> None:
        super().__init__("; ".join(f"{r.recipient}: {r.code} {r.message}" for r in refusals))
        self.refusals = list(refusals)


class AuthError(SmtpError):
    """The server did not accept our login (code None: no AUTH we could use)."""

    def __init__(self, code: int | None, message: str) -> None:
        super().__init__(message if code is None else f"{code} {message}")
        self.code, self.message = code, message


class Disconnected(SmtpError):
    """The server closed the connection."""

    def __init__(self, message: str | None = None, *, data_written: bool = False) -> None:
        super().__init__(message)
        self.data_written = data_written  # once True, the server may have taken the message


class ProtocolError(SmtpError):
    """The server's reply was not SMTP."""


class TlsUnavailable(SmtpError):
    """TLS is required but the server does not offer STARTTLS."""


class SmtpTimeout(SmtpError, TimeoutError):
    """The SMTP server did not answer in time."""


class Wire(asyncio.Protocol):
    """Cuts the byte stream into replies; the client awaits them a batch at a time."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.transport: asyncio.Transport | None = None
        self.replies: deque[Reply] = deque()
        self.outstanding = 1  # replies owed to us; the greeting comes unasked
        self.failure: SmtpError | None = None  # sticky: EOF, reset, garbage
        self.closing = False  # a 421 or an unasked reply: start nothing new here
        self.data_written = False  # of the current message, for Disconnected
        self.redact = False  # during AUTH, never quote what the server sent
        self._loop = loop
        self._buffer = bytearray()
        self._lines: list[str] = []
        self._size = 0
        self._want = 0
        self._waiter: asyncio.Future[None] | None = None
        self._paused = False
        self._drained: asyncio.Future[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(Disconnected(f"connection lost: {exc}" if exc else None))
        self.resume_writing()

    def eof_received(self) -> bool:
        self._fail(Disconnected())
        return False

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)

    def data_received(self, data: bytes) -> None:
        if self.failure is not None:
            return
        if self._buffer:  # the rest of a line cut by the last read
            self._buffer += data
            data = bytes(self._buffer)
            self._buffer.clear()
        start = 0
        try:
            while (end := data.find(b"\n", start)) >= 0 and end - start <= MAX_LINE:
                self._line(data[start:end])
                start = end + 1
            if len(data) - start > MAX_LINE:
                raise ProtocolError(f"reply line longer than {MAX_LINE} bytes")
        except ProtocolError as exc:
            self._fail(exc)
            return
        self._buffer += data[start:]
        waiter = self._waiter
        if waiter is not None and len(self.replies) >= self._want and not waiter.done():
            waiter.set_result(None)

    def _line(self, line: bytes) -> None:
        if not line[:3].isdigit():
            raise ProtocolError(
                "malformed reply line" + ("" if self.redact else f": {line[:60]!r}")
            )
        text = _CONTROL.sub("\ufffd", line[4:].strip(b" \t\r").decode("utf-8", "replace"))
        if line[3:4] == b"-":
            self._size += len(line)
            if self._size > MAX_REPLY:
                raise ProtocolError(f"multi-line reply longer than {MAX_REPLY} bytes")
            self._lines.append(text)
            return
        if self._lines:
            self._lines.append(text)
            text, self._lines, self._size = "\n".join(self._lines), [], 0
        code = int(line[:3])
        if code == 421 or self.outstanding == 0:  # closing, or unasked (an idle timeout?)
            self.closing = True
        if self.outstanding > 0:
            self.outstanding -= 1
            self.replies.append(Reply(code, text))

    def _fail(self, exc: SmtpError) -> None:
        if self.failure is None:
            if isinstance(exc, Disconnected):
                exc.data_written = self.data_written
            self.failure, self.closing = exc, True
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    @property
    def usable(self) -> bool:
        transport = self.transport
        return not self.closing and transport is not None and not transport.is_closing()

    @property
    def quiet(self) -> bool:
        """Nothing buffered, nothing unasked: safe to hand the socket over to TLS."""
        return not (self._buffer or self._lines or self.replies or self.closing)

    def write(self, data: bytes, *, replies: int) -> None:
        transport = self.transport
        if self.failure is not None or transport is None or transport.is_closing():
            raise self.failure or Disconnected(data_written=self.data_written)
        transport.write(data)
        self.outstanding += replies

    async def drain(self) -> None:
        while self._paused and self.failure is None:
            self._drained = self._loop.create_future()
            try:
                await self._drained
            finally:
                self._drained = None

    async def read(self, count: int) -> list[Reply]:
        replies = self.replies
        while len(replies) < count:
            if self.failure is not None:
                raise self.failure
            self._want = count
            self._waiter = self._loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return [replies.popleft() for _ in range(count)]
