"""An in-process aiosmtpd server that records what it accepts and can misbehave on purpose."""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Received:
    sender: str
    recipients: list[str]
    data: bytes
    at: float = 0.0  # time.monotonic() when the server accepted it

    @property
    def message(self) -> EmailMessage:
        parsed = message_from_bytes(self.data, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed


@dataclass
class Recorder:
    """The handler: answers per the knobs below, keeps every accepted message."""

    received: list[Received] = field(default_factory=list)
    data_reply: str | None = None  # e.g. "451 4.3.0 try later": refuse at DATA
    rcpt_replies: dict[str, str] = field(default_factory=dict)  # address -> reply
    mail_reply: str | None = None  # e.g. "421 4.7.0 Try again later": refuse at MAIL
    rcpt_domain_replies: dict[str, str] = field(default_factory=dict)  # domain -> reply
    refused: list[tuple[str, str]] = field(default_factory=list)  # (command, argument)
    data_delay: float = 0.0
    accepted_reply: str = "250 2.0.0 Message accepted"  # the reply to a message it keeps
    lock: threading.Lock = field(default_factory=threading.Lock)
    seen: threading.Condition = field(init=False)

    def __post_init__(self) -> None:
        self.seen = threading.Condition(self.lock)

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: Any
    ) -> str:
        if self.mail_reply is not None:
            self.refused.append(("MAIL", address))
            return self.mail_reply
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: Any
    ) -> str:
        reply = self.rcpt_replies.get(address)
        if reply is None:
            reply = self.rcpt_domain_replies.get(address.rpartition("@")[2].lower())
        if reply is not None:
            self.refused.append(("RCPT", address))
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.data_delay:
            await asyncio.sleep(self.data_delay)
        if self.data_reply is not None:
            self.refused.append(("DATA", str(envelope.mail_from)))
            return self.data_reply
        content = envelope.original_content or envelope.content
        assert isinstance(content, bytes)
        with self.seen:
            self.received.append(
                Received(
                    str(envelope.mail_from), list(envelope.rcpt_tos), content, time.monotonic()
                )
            )
            self.seen.notify_all()
        return self.accepted_reply

    def wait_for(self, count: int, timeout: float = 15.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        with self.seen:
            while len(self.received) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"got {len(self.received)} of {count} messages")
                self.seen.wait(left)
            return list(self.received)


class SmtpServer:
    """A started aiosmtpd server on a free loopback port."""

    def __init__(
        self,
        *,
        tls_context: ssl.SSLContext | None = None,
        implicit_tls: bool = False,
        auth: tuple[str, str] | None = None,
        port: int | None = None,
    ) -> None:
        self.handler = Recorder()
        self.port = port or free_port()
        kwargs: dict[str, Any] = {}
        if tls_context is not None and not implicit_tls:
            kwargs.update(tls_context=tls_context, require_starttls=True)
        if implicit_tls:
            kwargs["ssl_context"] = tls_context
        if auth is not None:
            user, password = auth

            def check(
                _server: Any, _session: Any, _envelope: Any, mechanism: str, data: Any
            ) -> Any:
                from aiosmtpd.smtp import AuthResult

                ok = data.login.decode() == user and data.password.decode() == password
                return AuthResult(success=ok, handled=False)

            kwargs.update(
                authenticator=check,
                auth_require_tls=tls_context is not None,
                auth_required=True,
            )
        self.controller = Controller(
            self.handler, hostname="127.0.0.1", port=self.port, ready_timeout=10, **kwargs
        )

    def __enter__(self) -> SmtpServer:
        self.controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.controller.stop()

    @property
    def received(self) -> list[Received]:
        return self.handler.received

    def wait_for(self, count: int, timeout: float = 15.0) -> list[Received]:
        return self.handler.wait_for(count, timeout)
