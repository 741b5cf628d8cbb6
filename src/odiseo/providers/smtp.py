"""The SMTP provider (aiosmtplib): one reused connection, failures classified once, here.

Sorting rule (SPEC.md): connection refused or dropped, timeouts, TLS or login
trouble and 4xx replies are transient — they may pass, so the message is
retried; 5xx replies, and every recipient refused for good, are permanent.
"""

from __future__ import annotations

import asyncio
import logging
import re
import ssl
import sys
from collections.abc import Sequence
from pathlib import Path

import aiosmtplib

from odiseo.errors import DeliveryFailure, PermanentFailure, TransientFailure
from odiseo.providers.base import Receipt

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


class _Slot:
    """One place in the connection pool; holds a connection once one was opened."""

    __slots__ = ("client",)

    def __init__(self) -> None:
        self.client: aiosmtplib.SMTP | None = None


class SmtpProvider:
    """Delivers through one SMTP server over a small pool of reused connections.

    Up to `pool_size` messages are in flight at once, each on its own connection;
    connections stay open between messages and batches and are reopened when the
    server drops them.
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
        if self.implicit_tls or self.start_tls:  # loading the CA bundle costs ~0.1 s
            self._tls_context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
            if not verify:
                self._tls_context.check_hostname = False
                self._tls_context.verify_mode = ssl.CERT_NONE
        self._all = [_Slot() for _ in range(pool_size)]
        self._free: asyncio.Queue[_Slot] | None = None

    def __repr__(self) -> str:
        return f"SmtpProvider({self.host}:{self.port}, tls={self.implicit_tls or self.start_tls})"

    @property
    def _client(self) -> aiosmtplib.SMTP | None:
        """The first pooled connection (for inspection)."""
        return self._all[0].client

    def _pool(self) -> asyncio.Queue[_Slot]:
        # Made on first use, inside the event loop that will use it.
        if self._free is None:
            self._free = asyncio.Queue()
            for slot in self._all:
                self._free.put_nowait(slot)
        return self._free

    def _new_client(self) -> aiosmtplib.SMTP:
        return aiosmtplib.SMTP(
            hostname=self.host,
            port=self.port,
            username=self._username,
            password=self._password,
            timeout=self.timeout,
            use_tls=self.implicit_tls,
            start_tls=self.start_tls,
            tls_context=self._tls_context,
        )

    async def _connected(self, slot: _Slot) -> aiosmtplib.SMTP:
        """The slot's open connection, or a new one."""
        if slot.client is not None and slot.client.is_connected:
            return slot.client
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
            reused = slot.client is not None and slot.client.is_connected
            try:
                return await self._send(slot, data, sender=sender, recipients=recipients)
            except aiosmtplib.SMTPServerDisconnected as exc:
                self._drop(slot)
                if not reused:
                    raise classify(exc) from exc
                # A reused connection the server had closed: one fresh try is not a retry.
                try:
                    return await self._send(slot, data, sender=sender, recipients=recipients)
                except Exception as again:
                    self._drop_unless_usable(slot, again)
                    raise classify(again) from again
            except Exception as exc:
                self._drop_unless_usable(slot, exc)
                raise classify(exc) from exc
        except BaseException:
            if not isinstance(sys.exc_info()[1], DeliveryFailure):
                self._drop(slot)  # cancelled mid-transaction: the session state is unknown
            raise
        finally:
            pool.put_nowait(slot)

    async def _send(
        self, slot: _Slot, data: bytes, *, sender: str, recipients: Sequence[str]
    ) -> Receipt:
        client = await self._connected(slot)
        refused, response = await client.sendmail(sender, list(recipients), data)
        return Receipt(
            code=250,
            response=response,
            refused={addr: f"{r.code} {r.message}" for addr, r in refused.items()},
        )

    def _drop_unless_usable(self, slot: _Slot, exc: Exception) -> None:
        # After a plain SMTP reply the session is still good (aiosmtplib sent RSET).
        if not isinstance(exc, aiosmtplib.SMTPResponseException | aiosmtplib.SMTPRecipientsRefused):
            self._drop(slot)

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
            if client.is_connected:
                try:
                    await asyncio.wait_for(client.quit(), self.timeout)
                except Exception:
                    client.close()

    async def close(self) -> None:
        """Say QUIT on every open connection."""
        for slot in self._all:
            client, slot.client = slot.client, None
            if client is not None and client.is_connected:
                try:
                    await asyncio.wait_for(client.quit(), 5)
                except Exception:
                    client.close()


def classify(exc: BaseException) -> DeliveryFailure:
    """The one place an SMTP or network error becomes transient or permanent."""
    if isinstance(exc, DeliveryFailure):
        return exc
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        replies = [(r.code, f"{r.recipient}: {r.code} {r.message}") for r in exc.recipients]
        text = "all recipients refused: " + "; ".join(reply for _, reply in replies)
        lowest = min((code for code, _ in replies), default=None)
        if replies and all(code >= 500 for code, _ in replies):
            return PermanentFailure(text, code=lowest, reason="recipients_refused")
        waits = [w for r in exc.recipients if (w := stated_wait(r.message)) is not None]
        return TransientFailure(
            text, code=lowest, reason="recipients_deferred", retry_after=max(waits, default=None)
        )
    if isinstance(exc, aiosmtplib.SMTPAuthenticationError) or (
        isinstance(exc, aiosmtplib.SMTPResponseException) and exc.code == AUTH_REQUIRED
    ):
        # Our credentials, not the message: keep it for when the operator fixes them.
        return TransientFailure(
            f"SMTP login refused: {exc.code} {exc.message}", code=exc.code, reason="auth"
        )
    if isinstance(exc, aiosmtplib.SMTPResponseException) and exc.code > 0:
        text = f"{exc.code} {exc.message}"
        if 500 <= exc.code < 600:
            return PermanentFailure(text, code=exc.code, reason="smtp_5xx")
        return TransientFailure(
            text, code=exc.code, reason="smtp_4xx", retry_after=stated_wait(exc.message)
        )
    for kinds, label, reason in _TRANSIENT_ERRORS:
        if isinstance(exc, kinds):
            return TransientFailure(f"{label}: {exc}", reason=reason)
    return TransientFailure(f"unexpected delivery error: {type(exc).__name__}: {exc}")


# Checked in order: the first match wins (SSLError is an OSError, timeouts are SMTP errors).
_TRANSIENT_ERRORS: tuple[
    tuple[type[BaseException] | tuple[type[BaseException], ...], str, str], ...
] = (
    ((aiosmtplib.SMTPTimeoutError, TimeoutError), "SMTP timeout", "timeout"),
    (aiosmtplib.SMTPServerDisconnected, "SMTP connection dropped", "connection"),
    (ssl.SSLError, "TLS failure", "tls"),
    (
        (aiosmtplib.SMTPConnectError, ConnectionError, OSError),
        "cannot reach SMTP server",
        "connection",
    ),
    (aiosmtplib.SMTPException, "SMTP error", "other"),
)
