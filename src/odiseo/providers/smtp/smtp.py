"""The SMTP provider: a pool of reused connections, failures classified once, here.

Sorting rule (README, "How a message moves"): connection refused or dropped,
timeouts, TLS or login trouble and 4xx replies are transient — they may pass,
so the message is retried; 5xx replies, and every recipient refused for good,
are permanent. The client (`_client.py`, `_wire.py`) only reports what the
server said; `classify` is the one place a reply or an error gets its kind.
"""

from __future__ import annotations

import asyncio
import logging
import re
import ssl
from collections.abc import Sequence
from pathlib import Path

from odiseo.domain.models import Refusal
from odiseo.errors import DeliveryFailure, PermanentFailure, TransientFailure
from odiseo.providers.base import Receipt
from odiseo.providers.smtp._client import (
    AuthError,
    Disconnected,
    ProtocolError,
    RecipientsRefused,
    ReplyError,
    SmtpClient,
    SmtpError,
    TlsUnavailable,
)
from odiseo.providers.smtp._client import Refusal as WireRefusal

log = logging.getLogger(__name__)

IMPLICIT_TLS_PORT = 465
AUTH_REQUIRED = 530  # "must issue STARTTLS first" / "authentication required": our setup
# "try again in 120 seconds", "retry after 5 minutes", "try later (10 min)"…
_STATED_WAIT = re.compile(
    r"(?:try|retry)[^0-9]{0,24}?(\d{1,6})\s*(s|sec|secs|seconds?|m|min|mins|minutes?|h|hours?)\b",
    re.IGNORECASE,
)
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600}
MAX_STATED_WAIT_SECONDS = 6 * 3600


def stated_wait(reply: str) -> float | None:
    """The wait an SMTP reply asks for, in seconds, if it names one (capped at 6 h)."""
    match = _STATED_WAIT.search(reply)
    if match is None:
        return None
    seconds = int(match.group(1)) * _UNIT_SECONDS[match.group(2)[0].lower()]
    return float(min(seconds, MAX_STATED_WAIT_SECONDS))


def client_tls_context(*, ca_file: Path | None, verify: bool) -> ssl.SSLContext:
    """The system's trust store, plus the CAs of SMTP_TLS_CA_FILE when it is set.

    `create_default_context(cafile=…)` would trust the file's CAs instead of the
    system's, not as well: a private relay CA must not cost the public ones.
    """
    context = ssl.create_default_context()
    if ca_file is not None:
        context.load_verify_locations(cafile=str(ca_file))
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


class _Slot:
    """One place in the connection pool; holds a connection once one was opened."""

    __slots__ = ("client",)

    def __init__(self) -> None:
        self.client: SmtpClient | None = None


class SmtpProvider:
    """Delivers through one SMTP server over a small pool of reused connections.

    Up to `pool_size` messages are in flight at once, each on its own connection;
    connections stay open between messages and batches and are reopened when the
    server drops them. The client pipelines (RFC 2920) when the server allows it.
    """

    name = "smtp"

    def __init__(
        self,
        *,
        host: str,
        port: int,
        use_tls: bool,
        username: str | None = None,
        password: str | None = None,
        timeout: float = 30.0,
        ca_file: Path | None = None,
        implicit_tls: bool | None = None,
        verify: bool = True,
        pool_size: int = 1,
    ) -> None:
        self.host = host
        self.port = port
        self.implicit_tls = port == IMPLICIT_TLS_PORT if implicit_tls is None else implicit_tls
        self.start_tls = use_tls and not self.implicit_tls
        self._username = username
        self._password = password
        self.timeout = timeout
        self.pool_size = pool_size
        self._tls_context: ssl.SSLContext | None = None
        if self.implicit_tls or self.start_tls:  # loading the CA bundle takes a while
            self._tls_context = client_tls_context(ca_file=ca_file, verify=verify)
        self._all = [_Slot() for _ in range(pool_size)]
        self._free: asyncio.Queue[_Slot] | None = None

    def __repr__(self) -> str:
        return f"SmtpProvider({self.host}:{self.port}, tls={self.implicit_tls or self.start_tls})"

    @property
    def _client(self) -> SmtpClient | None:
        """The first pooled connection (for inspection)."""
        return self._all[0].client

    def _pool(self) -> asyncio.Queue[_Slot]:
        # Made on first use, inside the event loop that will use it.
        if self._free is None:
            self._free = asyncio.Queue()
            for slot in self._all:
                self._free.put_nowait(slot)
        return self._free

    def _new_client(self) -> SmtpClient:
        return SmtpClient(
            host=self.host,
            port=self.port,
            timeout=self.timeout,
            tls_context=self._tls_context,
            implicit_tls=self.implicit_tls,
            start_tls=self.start_tls,
            username=self._username,
            password=self._password,
        )

    async def _connected(self, slot: _Slot) -> SmtpClient:
        """The slot's open connection, or a new one."""
        if slot.client is not None and slot.client.is_usable:
            return slot.client
        self._drop(slot)
        client = self._new_client()
        await client.connect()
        slot.client = client
        return client

    async def deliver(
        self,
        data: bytes,
        *,
        sender: str,
        recipients: Sequence[str],
        message_id: str,
    ) -> Receipt:
        pool = self._pool()
        slot = await pool.get()
        try:
            return await self._deliver_on(slot, data, sender=sender, recipients=recipients)
        finally:
            pool.put_nowait(slot)

    async def _deliver_on(
        self, slot: _Slot, data: bytes, *, sender: str, recipients: Sequence[str]
    ) -> Receipt:
        reused = slot.client is not None and slot.client.is_usable
        try:
            try:
                return await self._send(slot, data, sender=sender, recipients=recipients)
            except Disconnected as exc:
                if not reused or exc.data_written:
                    raise  # the server may have the message: retrying now could send it twice
                # A reused connection the server had closed: one fresh try is not a retry.
                log.debug("SMTP connection to %s was closed by the server; reconnecting", self.host)
                return await self._send(slot, data, sender=sender, recipients=recipients)
        except Exception as exc:
            if slot.client is not None and not slot.client.is_usable:
                self._drop(slot)  # a refusal (RSET sent) keeps the session; anything else not
            raise classify(exc) from exc
        except BaseException:
            self._drop(slot)  # cancelled mid-transaction: the session state is unknown
            raise

    async def _send(
        self, slot: _Slot, data: bytes, *, sender: str, recipients: Sequence[str]
    ) -> Receipt:
        client = await self._connected(slot)
        result = await client.send(data, sender=sender, recipients=recipients)
        refused = tuple(_refusal(r) for r in result.refused)
        return Receipt(code=result.code, response=result.message, refused=refused)

    @staticmethod
    def _drop(slot: _Slot) -> None:
        client, slot.client = slot.client, None
        if client is not None:
            client.close()

    async def check(self) -> None:
        client = self._new_client()
        try:
            await client.connect()
            await client.noop()
        except Exception as exc:
            raise classify(exc) from exc
        finally:
            await client.quit()

    async def close(self) -> None:
        """Say QUIT on every open connection, all at once, each within 5 s."""
        clients = [slot.client for slot in self._all if slot.client is not None]
        for slot in self._all:
            slot.client = None
        await asyncio.gather(*(client.quit() for client in clients))


def _refusal(refused: WireRefusal) -> Refusal:
    return Refusal(
        recipient=refused.recipient,
        code=refused.code,
        response=f"{refused.code} {refused.message}",
        permanent=refused.code >= 500,
    )


def classify(exc: BaseException) -> DeliveryFailure:
    """The one place an SMTP or network error becomes transient or permanent."""
    if isinstance(exc, DeliveryFailure):
        return exc
    if isinstance(exc, RecipientsRefused):
        replies = [(r.code, f"{r.recipient}: {r.code} {r.message}") for r in exc.refusals]
        text = "all recipients refused: " + "; ".join(reply for _, reply in replies)
        lowest = min((code for code, _ in replies), default=None)
        refusals = tuple(_refusal(r) for r in exc.refusals)
        if replies and all(code >= 500 for code, _ in replies):
            return PermanentFailure(
                text, code=lowest, reason="recipients_refused", refusals=refusals
            )
        waits = [w for r in exc.refusals if (w := stated_wait(r.message)) is not None]
        return TransientFailure(
            text,
            code=lowest,
            reason="recipients_deferred",
            retry_after=max(waits, default=None),
            refusals=refusals,
            stage="RCPT",
        )
    if isinstance(exc, AuthError) or (isinstance(exc, ReplyError) and exc.code == AUTH_REQUIRED):
        # Our credentials, not the message: keep it for when the operator fixes them.
        said = exc.message if exc.code is None else f"{exc.code} {exc.message}"
        return TransientFailure(
            f"SMTP login refused: {said}", code=exc.code, reason="auth", stage="AUTH"
        )
    if isinstance(exc, ReplyError):
        text = f"{exc.code} {exc.message}"
        if 500 <= exc.code < 600:
            return PermanentFailure(text, code=exc.code, reason="smtp_5xx")
        return TransientFailure(
            text,
            code=exc.code,
            reason="smtp_4xx",
            retry_after=stated_wait(exc.message),
            stage=exc.command,
            reply=exc.message,
        )
    for kinds, label, reason in _TRANSIENT_ERRORS:
        if isinstance(exc, kinds):
            return TransientFailure(f"{label}: {exc}", reason=reason)
    return TransientFailure(f"unexpected delivery error: {type(exc).__name__}: {exc}")


# Checked in order: the first match wins (SSLError is an OSError, SmtpTimeout a TimeoutError).
_TRANSIENT_ERRORS: tuple[
    tuple[type[BaseException] | tuple[type[BaseException], ...], str, str], ...
] = (
    (TimeoutError, "SMTP timeout", "timeout"),
    (Disconnected, "SMTP connection dropped", "connection"),
    ((ssl.SSLError, TlsUnavailable), "TLS failure", "tls"),
    ((ConnectionError, OSError), "cannot reach SMTP server", "connection"),
    ((ProtocolError, SmtpError), "SMTP error", "other"),
)
