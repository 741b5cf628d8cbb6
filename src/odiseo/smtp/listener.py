"""SMTP listeners on the running event loop: aiosmtpd's protocol with the limits a port needs.

Each listener serves aiosmtpd's `SMTP` protocol with `loop.create_server`, in the
process's own loop (`odiseo smtp`, or beside the API in `odiseo run`), and adds what
aiosmtpd leaves to its user:

- a connection limit: a connection beyond `max_connections` gets `421` and is closed;
- per-IP throttling of failed AUTH: an address that fails `auth_failures_per_minute`
  times within a minute gets `421` and is refused for `AUTH_PAUSE_SECONDS`, new
  connections included;
- a command timeout (between commands) and a longer one for a message's DATA;
- SIZE advertised and enforced (`552`), and DATA lines up to `MAX_LINE_BYTES` handed to
  the handler, which holds them to the 998-octet rule with a clear `554` (longer ones
  get aiosmtpd's `500`);
- AUTH required, when the listener authenticates at all, before MAIL (`530`), and
  refused before TLS (`538`) unless the listener allows plaintext AUTH.

What a listener does with mail is its handler's (aiosmtpd's `handle_MAIL`, `handle_RCPT`,
`handle_DATA` hooks): `submission.py` for applications sending; the bounce listener
plugs in the same way, as one more `ListenerSpec` given to `start_listeners`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from aiosmtpd.smtp import SMTP, AuthResult

log = logging.getLogger(__name__)

MAX_LINE_BYTES = 64 * 1024  # DATA lines the handler sees (and refuses past 998 octets)
AUTH_PAUSE_SECONDS = 60.0
AUTH_WINDOW_SECONDS = 60.0
LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})

Authenticator = Callable[[Any, Any, Any, str, Any], AuthResult]


def is_loopback(host: str) -> bool:
    return host in LOOPBACK or host.startswith("127.")


@dataclass(frozen=True, kw_only=True)
class ListenerSpec:
    """One listening port: where, how it is secured and limited, and its handler."""

    name: str  # in logs: "submission", "submission (implicit TLS)", "bounces"
    handler: Any  # aiosmtpd hooks: handle_MAIL, handle_RCPT, handle_DATA, ...
    host: str
    port: int
    hostname: str  # the name in the greeting and EHLO reply
    data_size_limit: int  # advertised as SIZE; 552 beyond
    max_connections: int
    command_timeout: float
    data_timeout: float
    starttls: ssl.SSLContext | None = None  # offered as STARTTLS
    implicit_tls: ssl.SSLContext | None = None  # TLS from the first byte
    authenticator: Authenticator | None = None  # None: no AUTH offered or needed
    allow_plaintext_auth: bool = False  # AUTH before TLS beyond loopback
    auth_failures_per_minute: int = 10

    @property
    def auth_requires_tls(self) -> bool:
        """Whether AUTH waits for STARTTLS (implicit TLS is TLS already)."""
        plain_ok = self.allow_plaintext_auth or is_loopback(self.host)
        return self.implicit_tls is None and not plain_ok


class AuthThrottle:
    """Failed AUTH per client IP within a sliding minute; too many pause the address."""

    def __init__(
        self,
        *,
        per_minute: int,
        pause: float = AUTH_PAUSE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.per_minute = per_minute
        self.pause = pause
        self.clock = clock
        self._failures: dict[str, list[float]] = {}
        self._paused: dict[str, float] = {}

    def paused_for(self, ip: str) -> float:
        """Seconds this address must still wait (0 when it may try)."""
        until = self._paused.get(ip)
        if until is None:
            return 0.0
        left = until - self.clock()
        if left <= 0:
            del self._paused[ip]
            return 0.0
        return left

    def failed(self, ip: str) -> None:
        """Count one failed AUTH of `ip`; the one that reaches the limit pauses it."""
        now = self.clock()
        recent = [t for t in self._failures.get(ip, ()) if now - t < AUTH_WINDOW_SECONDS]
        recent.append(now)
        if len(recent) >= self.per_minute:
            self._paused[ip] = now + self.pause
            self._failures.pop(ip, None)
            log.warning("SMTP AUTH: %s failed %d times in a minute; paused", ip, len(recent))
            return
        self._failures[ip] = recent
        if len(self._failures) > 10_000:  # bounded: forget the oldest addresses
            for stale in list(self._failures)[:1000]:
                del self._failures[stale]


class Listener:
    """One started listener: its server and the connections it is serving."""

    def __init__(self, spec: ListenerSpec, *, clock: Callable[[], float] = time.monotonic):
        self.spec = spec
        self.throttle = AuthThrottle(per_minute=spec.auth_failures_per_minute, clock=clock)
        self.connections: set[_Protocol] = set()
        self.server: asyncio.AbstractServer | None = None

    @property
    def port(self) -> int:
        """The port it listens on (the one the system chose, when spec.port is 0)."""
        assert self.server is not None
        sockets = getattr(self.server, "sockets", ())
        return int(sockets[0].getsockname()[1]) if sockets else self.spec.port

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(
            lambda: _Protocol(self),
            host=self.spec.host,
            port=self.spec.port,
            ssl=self.spec.implicit_tls,
            reuse_address=True,
        )
        log.info("SMTP %s listening on %s:%d", self.spec.name, self.spec.host, self.port)

    async def close(self, *, grace: float = 10.0) -> None:
        """Stop accepting, let a message being stored finish (within `grace`), close the rest."""
        if self.server is not None:
            self.server.close()
        busy = [c for c in self.connections if c.busy]
        if busy:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    asyncio.gather(*(c.idle.wait() for c in busy)), timeout=grace
                )
        for connection in list(self.connections):
            connection.drop()
        if self.server is not None:
            await self.server.wait_closed()


def _quiet_aiosmtpd() -> None:
    """aiosmtpd logs a line per command at INFO, and warns on every AUTH that a property
    it sets itself is deprecated: keep its warnings but that one."""
    logger = logging.getLogger("mail.log")
    logger.setLevel(logging.WARNING)
    if not any(isinstance(f, _NoLoginDataWarning) for f in logger.filters):
        logger.addFilter(_NoLoginDataWarning())


class _NoLoginDataWarning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "login_data is deprecated" not in record.getMessage()


async def start_listeners(specs: Sequence[ListenerSpec]) -> list[Listener]:
    """Start a listener for each spec; if one cannot start, those started are closed."""
    _quiet_aiosmtpd()
    started: list[Listener] = []
    try:
        for spec in specs:
            listener = Listener(spec)
            await listener.start()
            started.append(listener)
    except BaseException:
        await close_listeners(started)
        raise
    return started


async def close_listeners(listeners: Sequence[Listener]) -> None:
    for listener in listeners:
        await listener.close()


class _Protocol(SMTP):
    """aiosmtpd's protocol with a listener's limits (see the module docstring)."""

    line_length_limit = MAX_LINE_BYTES

    def __init__(self, listener: Listener) -> None:
        spec = listener.spec
        self.listener = listener
        self.refused = False
        self.busy = False
        self.idle = asyncio.Event()
        self.idle.set()
        super().__init__(
            spec.handler,
            data_size_limit=spec.data_size_limit,
            hostname=spec.hostname,
            ident="Odiseo",
            tls_context=spec.starttls,
            timeout=spec.command_timeout,
            auth_require_tls=spec.auth_requires_tls,
            authenticator=self._check_auth if spec.authenticator else None,
            auth_exclude_mechanism=None if spec.authenticator else ["LOGIN", "PLAIN"],
        )
        # Required here rather than through auth_required=, which warns whenever TLS is
        # not also required (a loopback listener): the check is the same.
        self._auth_required = spec.authenticator is not None

    @property
    def peer_ip(self) -> str:
        peer = self.session.peer if self.session is not None else None
        return str(peer[0]) if isinstance(peer, tuple) and peer else "unknown"

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self.transport is None:  # a new connection (not the switch to TLS)
            reason = self._refusal(transport)
            if reason is not None:
                self.refused = True
                transport.write(f"421 4.7.0 {reason}\r\n".encode("ascii"))  # type: ignore[attr-defined]
                transport.close()
                return
            self.listener.connections.add(self)
        super().connection_made(transport)

    def _refusal(self, transport: asyncio.BaseTransport) -> str | None:
        peer = transport.get_extra_info("peername")
        ip = str(peer[0]) if isinstance(peer, tuple) and peer else "unknown"
        if (wait := self.listener.throttle.paused_for(ip)) > 0:
            return f"too many failed AUTH attempts from {ip}; try again in {wait:.0f} s"
        if len(self.listener.connections) >= self.listener.spec.max_connections:
            log.warning("SMTP %s: connection limit reached", self.listener.spec.name)
            return "too many connections; try again later"
        return None

    def connection_lost(self, error: Exception | None) -> None:
        if self.refused:
            return
        self.listener.connections.discard(self)
        super().connection_lost(error)

    def drop(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def _check_auth(
        self, server: Any, session: Any, envelope: Any, mechanism: str, data: Any
    ) -> AuthResult:
        authenticator = self.listener.spec.authenticator
        assert authenticator is not None
        result = authenticator(server, session, envelope, mechanism, data)
        if not result.success:
            self.listener.throttle.failed(self.peer_ip)
        return result

    async def smtp_AUTH(self, arg: str) -> None:
        if (wait := self.listener.throttle.paused_for(self.peer_ip)) > 0:
            await self._pause(wait)
            return
        await super().smtp_AUTH(arg)
        if (wait := self.listener.throttle.paused_for(self.peer_ip)) > 0:
            await self._pause(wait)

    async def _pause(self, wait: float) -> None:
        await self.push(f"421 4.7.0 too many failed AUTH attempts; try again in {wait:.0f} s")
        self.drop()

    async def smtp_DATA(self, arg: str) -> None:
        self._reset_timeout(self.listener.spec.data_timeout)
        self.busy = True
        self.idle.clear()
        try:
            await super().smtp_DATA(arg)
        finally:
            self.busy = False
            self.idle.set()
            self._reset_timeout()
