"""The bounce listener's handler: mail for our VERP return paths, nothing else.

Bounces come from any mail server on the internet, unauthenticated, so what proves a
message is ours to read is its recipient: a return path whose tag checks
(domain/verp.py). Every other recipient is refused at RCPT (550 5.1.1), so the
listener is no relay and no mailbox, and nobody can make it suppress an address for
a message they never received. A message taken is answered 250 only once what it
reports (or the message itself, when unreadable) is committed; 451 while the database
is away, so the sending MTA tries again later.
"""

from __future__ import annotations

import logging
from typing import Any

from odiseo.bounce_service import BounceService
from odiseo.config import Settings
from odiseo.errors import StoreUnavailable
from odiseo.smtp.listener import ListenerSpec
from odiseo.smtp.submission import server_tls

log = logging.getLogger(__name__)

MAX_RECIPIENTS = 50  # a DSN has one; more is not a bounce


class BounceHandler:
    """aiosmtpd hooks of the bounce listener."""

    def __init__(self, service: BounceService) -> None:
        self.service = service

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        if not self.service.accepts(address):
            return "550 5.1.1 no such mailbox: this server takes bounces for its return paths only"
        if len(envelope.rcpt_tos) >= MAX_RECIPIENTS:
            return "452 4.5.3 too many recipients"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        raw = envelope.original_content or envelope.content
        if isinstance(raw, str):  # pragma: no cover - the listener keeps bytes
            raw = raw.encode("utf-8", "surrogateescape")
        try:
            await self.service.receive(
                raw, sender=str(envelope.mail_from or ""), recipients=list(envelope.rcpt_tos)
            )
        except StoreUnavailable:
            log.warning("bounce refused for now: the database is unavailable")
            return "451 4.3.0 database unavailable; try again later"
        except Exception:  # never lose a bounce to a bug: the MTA keeps it and retries
            log.exception("bounce could not be recorded")
            return "451 4.3.0 the bounce could not be recorded; try again later"
        return "250 2.0.0 OK: recorded"


def bounce_spec(
    settings: Settings, *, service: BounceService, hostname: str
) -> ListenerSpec | None:
    """The bounce listener BOUNCE_LISTEN_PORT asks for: no AUTH (bounces come from any
    MTA), STARTTLS offered when SMTP_SUBMISSION_TLS_CERT/_KEY are set, the submission
    listener's connection limit and timeouts."""
    if settings.bounce_listen_port is None:
        return None
    return ListenerSpec(
        name="bounces",
        handler=BounceHandler(service),
        host=settings.bounce_listen_host,
        port=settings.bounce_listen_port,
        hostname=hostname,
        data_size_limit=settings.bounce_max_message_bytes,
        max_connections=settings.smtp_submission_max_connections,
        command_timeout=settings.smtp_submission_command_timeout_seconds,
        data_timeout=settings.smtp_submission_data_timeout_seconds,
        starttls=server_tls(settings),
    )
