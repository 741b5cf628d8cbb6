"""SMTP submission: applications send through Odiseo as through any SMTP server.

The password of AUTH PLAIN or LOGIN is an API key with the `send` scope, checked
against the same keys as the HTTP API (the user name is ignored). A message then
takes the path of `POST /emails`: the sender allow-list (envelope sender and header
From), the recipient limit, the size limit, the message writer's wire rules, and
the store, whose commit is what `250 2.0.0 queued as <id>` reports, so a 250 means
what a 202 means. Suppression, DKIM, events, webhooks and the per-key rate limit
follow as for any stored message. Every refusal is a reply with a clear text:

    530  MAIL without AUTH (the listener's own check)
    535  a wrong key, or a key without the send scope
    550  a sender that is not allowed
    553  a recipient that is not a valid address
    452  a recipient beyond SMTP_SUBMISSION_MAX_RECIPIENTS
    552  a message larger than the SIZE advertised
    554  a message that breaks the wire rules or does not parse cleanly
    451  the database is unreachable (nothing stored: the client retries), or the
         key's rate limit is reached
"""

from __future__ import annotations

import logging
import ssl
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword, Session

from odiseo.config import Settings
from odiseo.errors import ConfigError, InvalidEmail, SenderRefused, StoreUnavailable, TooLarge
from odiseo.keys import ApiKey, KeyRing, Scope
from odiseo.mime.addresses import envelope_address, is_special_use
from odiseo.service import EmailService
from odiseo.smtp.listener import ListenerSpec

log = logging.getLogger(__name__)

UNAVAILABLE = "451 4.3.0 database unavailable; nothing was stored, try again later"


def reply(code: int, status: str, text: str) -> str:
    """One reply line: the text made printable ASCII (it may quote what a client sent)."""
    clean = "".join(c if " " <= c <= "~" else "?" for c in text)
    return f"{code} {status} {clean[:400]}"


class SubmissionHandler:
    """The aiosmtpd hooks of the submission listener (see the module docstring)."""

    def __init__(
        self,
        *,
        service: EmailService,
        keys: KeyRing,
        max_recipients: int,
        rate_limit_per_minute: int = 0,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.service = service
        self.keys = keys
        self.max_recipients = max_recipients
        self.rate_limit_per_minute = rate_limit_per_minute
        self.clock = clock

    def authenticate(
        self, server: Any, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        """AUTH PLAIN/LOGIN: the password is an API key with the send scope."""
        if not isinstance(data, LoginPassword):
            return AuthResult(success=False, handled=False)
        try:
            key: ApiKey | None = self.keys.find(data.password.decode("utf-8"))
        except UnicodeDecodeError:
            key = None
        if key is None:
            log.info("SMTP AUTH refused: wrong key (from %s)", _ip(session))
            return AuthResult(success=False, handled=False)
        if Scope.SEND not in key.scopes:
            log.info("SMTP AUTH refused: %s lacks the send scope", key.label)
            return AuthResult(
                success=False,
                handled=False,
                message="535 5.7.8 this API key lacks the send scope",
            )
        return AuthResult(success=True, auth_data=key)

    async def handle_MAIL(
        self, server: Any, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        try:
            self.service.check_sender(address.lower(), field="MAIL FROM")
        except SenderRefused as exc:
            return reply(550, "5.7.1", exc.message)
        try:
            limited = await self._rate_limited(session.auth_data)
        except StoreUnavailable:
            return UNAVAILABLE
        if limited is not None:
            return limited
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 2.1.0 OK"

    async def handle_RCPT(
        self, server: Any, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if len(envelope.rcpt_tos) >= self.max_recipients:
            return reply(
                452,
                "4.5.3",
                f"too many recipients: at most {self.max_recipients} per message; "
                "send the rest in another",
            )
        try:
            recipient = envelope_address(address)
        except ValueError as exc:
            return reply(553, "5.1.3", f"<{address}> is not a valid address: {exc}")
        if self.service.sender.refuse_special_use and is_special_use(recipient):
            return reply(
                553,
                "5.1.3",
                f"<{recipient}> is at a special-use or reserved domain name, "
                "which REFUSE_SPECIAL_USE_DOMAINS refuses",
            )
        if recipient.lower() not in (r.lower() for r in envelope.rcpt_tos):
            envelope.rcpt_tos.append(recipient)
            envelope.rcpt_options.extend(options)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: Any, session: Session, envelope: Envelope) -> str:
        key = session.auth_data
        assert isinstance(key, ApiKey)  # the listener asks for AUTH before MAIL
        data = envelope.original_content or b""
        try:
            submitted = await self.service.submit_message(
                data, recipients=envelope.rcpt_tos, scope=key.scope_id, now=self.clock()
            )
        except StoreUnavailable as exc:
            log.warning("SMTP submission refused: %s", exc)
            return UNAVAILABLE
        except TooLarge as exc:
            return reply(552, "5.3.4", exc.message)
        except SenderRefused as exc:
            return reply(550, "5.7.1", exc.message)
        except InvalidEmail as exc:
            log.info("SMTP submission refused (%s): %s", key.label, exc.message)
            return reply(554, "5.6.0", exc.message)
        return f"250 2.0.0 queued as {submitted.message_id}"

    async def handle_exception(self, error: Exception) -> str:
        """Anything unexpected: logged, and a transient reply so the client tries again."""
        log.error("SMTP submission: unexpected %s", type(error).__name__, exc_info=error)
        return "451 4.3.0 internal error; nothing was stored, try again later"

    async def _rate_limited(self, key: ApiKey | None) -> str | None:
        """The 451 reply when `key` went over RATE_LIMIT_PER_MINUTE (one per message)."""
        if key is None:
            return None
        limit = self.rate_limit_per_minute
        retry_after = await self.service.rate_limited(key.label, limit=limit, now=time.time())
        if retry_after is None:
            return None
        return reply(
            451,
            "4.7.1",
            f"rate limit of {limit} messages per minute reached; retry in {retry_after} s",
        )


def _ip(session: Session) -> str:
    peer = session.peer
    return str(peer[0]) if isinstance(peer, tuple) and peer else "unknown"


def submission_specs(
    settings: Settings, *, service: EmailService, keys: KeyRing, hostname: str
) -> list[ListenerSpec]:
    """The submission listeners SMTP_SUBMISSION_* ask for: none, one, or with implicit TLS two."""
    port = settings.smtp_submission_port
    if port is None and settings.smtp_submission_tls_port is None:
        return []
    handler = SubmissionHandler(
        service=service,
        keys=keys,
        max_recipients=settings.smtp_submission_max_recipients,
        rate_limit_per_minute=settings.rate_limit_per_minute,
    )
    context = server_tls(settings)
    common: dict[str, Any] = {
        "handler": handler,
        "host": settings.smtp_submission_host,
        "hostname": hostname,
        "data_size_limit": service.submission_limit,
        "max_connections": settings.smtp_submission_max_connections,
        "command_timeout": settings.smtp_submission_command_timeout_seconds,
        "data_timeout": settings.smtp_submission_data_timeout_seconds,
        "authenticator": handler.authenticate,
        "allow_plaintext_auth": settings.smtp_submission_allow_plaintext_auth,
        "auth_failures_per_minute": settings.smtp_submission_auth_failures_per_minute,
    }
    specs = []
    if port is not None:
        specs.append(ListenerSpec(name="submission", port=port, starttls=context, **common))
    if settings.smtp_submission_tls_port is not None:
        specs.append(
            ListenerSpec(
                name="submission (implicit TLS)",
                port=settings.smtp_submission_tls_port,
                implicit_tls=context,
                **common,
            )
        )
    return specs


def server_tls(settings: Settings) -> ssl.SSLContext | None:
    """The server context of SMTP_SUBMISSION_TLS_CERT/_KEY, or None without them."""
    cert, key = settings.smtp_submission_tls_cert, settings.smtp_submission_tls_key
    if cert is None or key is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        raise ConfigError(
            f"SMTP_SUBMISSION_TLS_CERT/_KEY: cannot load {cert} with its key: {reason}"
        ) from None
    return context
