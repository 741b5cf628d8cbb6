"""SMTP peers for the delivery tests: connection-counting aiosmtpd servers and the providers
that talk to them, all stopped after the test (fixture `smtp`)."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session

from odiseo.domain.models import OutgoingEmail
from odiseo.mime import build_message
from odiseo.providers.base import Provider, Receipt
from odiseo.providers.smtp import SmtpProvider
from tests.support.smtp import Recorder, SmtpServer

DATE = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)


@dataclass
class TrackingRecorder(Recorder):
    """A Recorder that also notes every SMTP connection (one per client peer) that said EHLO."""

    peers: list[Any] = field(default_factory=list)  # (host, port) of each client
    protocols: list[SMTP] = field(default_factory=list)

    async def handle_EHLO(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        session.host_name = hostname  # the 5-argument hook replaces aiosmtpd's own bookkeeping
        with self.lock:
            if session.peer not in self.peers:  # after STARTTLS the same peer says EHLO again
                self.peers.append(session.peer)
                self.protocols.append(server)
        return responses

    @property
    def connections(self) -> int:
        with self.lock:
            return len(self.peers)


def connections(server: SmtpServer) -> int:
    """How many SMTP connections `server` (started by SmtpHarness) has seen."""
    assert isinstance(server.handler, TrackingRecorder)
    return server.handler.connections


def tracked(server: SmtpServer) -> SmtpServer:
    """Swap the (not yet started) server's handler for a connection-counting one."""
    handler = TrackingRecorder()
    server.handler = handler
    server.controller.handler = handler
    return server


def drop_connections(server: SmtpServer) -> None:
    """Make the server hang up on every client, and return once the sockets are closed.

    This blocks the calling thread without yielding to the test's event loop, so
    the client has not yet seen the hang-up when this returns.
    """
    handler = server.handler
    assert isinstance(handler, TrackingRecorder)
    loop = server.controller.loop
    closed = threading.Event()

    def close_all() -> None:
        for protocol in handler.protocols:
            if protocol.transport is not None:
                protocol.transport.close()
        # transport.close() schedules the socket close with call_soon: this runs after it.
        loop.call_soon(closed.set)

    loop.call_soon_threadsafe(close_all)
    assert closed.wait(5), "the SMTP server did not close its connections"


class SmtpHarness:
    """Starts servers and providers for one test; stops them all (providers first) after."""

    def __init__(self) -> None:
        self.servers: list[SmtpServer] = []
        self.providers: list[SmtpProvider] = []

    def server(self, **kwargs: Any) -> SmtpServer:
        server = tracked(SmtpServer(**kwargs))
        server.__enter__()
        self.servers.append(server)
        return server

    def provider(self, port: int, **kwargs: Any) -> SmtpProvider:
        kwargs.setdefault("use_tls", False)
        provider = SmtpProvider(host="127.0.0.1", port=port, **kwargs)
        self.providers.append(provider)
        return provider

    async def close(self) -> None:
        for provider in self.providers:
            await provider.close()
        for server in self.servers:
            server.__exit__(None, None, None)


async def deliver(provider: Provider, email: OutgoingEmail) -> Receipt:
    """Build `email` as the worker does and hand it to `provider`."""
    return await provider.deliver(
        build_message(email, date=DATE),
        sender=email.from_email,
        recipients=email.recipients,
        message_id=email.message_id,
    )
