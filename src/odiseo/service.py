"""Use cases shared by the HTTP API and the command line: enqueue and look up messages."""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from odiseo.domain.models import NewEmail, OutgoingEmail, QueuedEmail
from odiseo.errors import Duplicate, NotFound, OdiseoError
from odiseo.rendering import Renderer
from odiseo.storage.store import EmailStore

log = logging.getLogger(__name__)

DEFAULT_PRIORITY = 5


class InvalidEmail(OdiseoError):
    """The email cannot be sent as given."""


@dataclass(frozen=True, kw_only=True)
class EmailRequest:
    """What a caller asks to send, already validated field by field."""

    to: tuple[str, ...]
    subject: str | None = None
    html: str | None = None
    text: str | None = None
    cc: tuple[str, ...] = ()
    bcc: tuple[str, ...] = ()
    reply_to: tuple[str, ...] = ()
    from_email: str | None = None
    from_name: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    priority: int = DEFAULT_PRIORITY
    send_at: datetime | None = None
    client_message_id: str | None = None
    template_id: str | None = None
    template_vars: dict[str, Any] = field(default_factory=dict)
    tags: tuple[str, ...] = ()
    metadata: dict[str, Any] = field(default_factory=dict)

    def fingerprint(self) -> str:
        """A hash of the payload, to tell a harmless resend from a conflicting reuse of an id."""
        payload = asdict(self)
        payload.pop("client_message_id")
        canonical = json.dumps(payload, sort_keys=True, default=str, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True, kw_only=True)
class Submitted:
    """The message id a request ended up with; `created` is False for a resend."""

    message_id: str
    created: bool


@dataclass(frozen=True, kw_only=True)
class Sender:
    """Defaults for the From header and the senders a request may pick instead."""

    email: str
    name: str | None
    allowed: frozenset[str] = frozenset()

    def permits(self, address: str) -> bool:
        address = address.lower()
        domain = "@" + address.rpartition("@")[2]
        return address in self.allowed or domain in self.allowed or address == self.email.lower()


class EmailService:
    """Turns requests into stored messages and answers questions about them."""

    def __init__(
        self, *, store: EmailStore, renderer: Renderer, sender: Sender, max_retries: int
    ) -> None:
        self.store = store
        self.renderer = renderer
        self.sender = sender
        self.max_retries = max_retries

    def prepare(self, request: EmailRequest) -> NewEmail:
        """Render and assemble the message to store; raises InvalidEmail or TemplateError."""
        subject, html, text = request.subject, request.html, request.text
        if request.template_id is not None:
            rendered = self.renderer.render(request.template_id, request.template_vars)
            html = rendered.html
            text = text if text is not None else rendered.text
            subject = subject if subject is not None else rendered.subject
        if not subject:
            raise InvalidEmail("subject: required (give one, or a template that has a subject)")
        if any(c in subject for c in "\r\n\0"):
            raise InvalidEmail("subject: must not contain line breaks or NUL")
        if html is None and text is None:
            raise InvalidEmail("body: required (give body, text or template_id)")
        from_email = request.from_email or self.sender.email
        if not self.sender.permits(from_email):
            raise InvalidEmail(f"from_email: {from_email} is not an allowed sender")
        message_id = str(uuid.uuid4())
        domain = self.sender.email.rpartition("@")[2] or "odiseo.local"
        email = OutgoingEmail(
            message_id=message_id,
            rfc_message_id=f"<{message_id}@{domain}>",
            from_email=from_email,
            from_name=request.from_name if request.from_name is not None else self.sender.name,
            to=request.to,
            cc=request.cc,
            bcc=request.bcc,
            reply_to=request.reply_to,
            subject=subject,
            html=html,
            text=text,
            headers=request.headers,
        )
        return NewEmail(
            email=email,
            priority=request.priority,
            max_retries=self.max_retries,
            send_at=request.send_at,
            client_message_id=request.client_message_id,
            payload_hash=request.fingerprint() if request.client_message_id else None,
            template_id=request.template_id,
            tags=request.tags,
            metadata=request.metadata,
        )

    async def submit(self, request: EmailRequest, *, now: datetime) -> Submitted:
        """Store one email durably; a resend of a known client_message_id creates nothing.

        Raises:
            Duplicate: the client_message_id is taken by a different email (same_payload False).
        """
        item = self.prepare(request)
        (result,) = await self.store.enqueue([item], now=now)
        if not result.created and not result.same_payload:
            raise Duplicate(result.message_id, same_payload=False)
        if result.created:
            log.info(
                "queued for %d recipient(s)",
                len(item.email.recipients),
                extra={"message_id": result.message_id},
            )
        return Submitted(message_id=result.message_id, created=result.created)

    async def get(self, message_id: str) -> QueuedEmail:
        """The stored message with its history; raises NotFound."""
        found = await self.store.get(_known_shape(message_id))
        if found is None:
            raise NotFound(f"no message {message_id!r}")
        return found

    async def cancel(self, message_id: str, *, now: datetime) -> QueuedEmail:
        """Cancel a waiting message; raises NotFound or InvalidTransition."""
        await self.store.cancel(_known_shape(message_id), now=now)
        log.info("cancelled", extra={"message_id": message_id, "status": "cancelled"})
        return await self.get(message_id)

    async def retry(self, message_id: str, *, now: datetime) -> QueuedEmail:
        """Queue a failed message again; raises NotFound or InvalidTransition."""
        await self.store.requeue(_known_shape(message_id), now=now)
        log.info("requeued by operator", extra={"message_id": message_id, "status": "pending"})
        return await self.get(message_id)

    async def retry_failed(self, *, now: datetime, created_after: datetime | None = None) -> int:
        """Queue every failed message again (optionally only recent ones)."""
        count = await self.store.requeue_failed(now=now, created_after=created_after)
        log.info("requeued %d failed message(s)", count)
        return count


def _known_shape(message_id: str) -> str:
    """The id itself when it looks like one of ours; NotFound otherwise (never a DB error)."""
    try:
        return str(uuid.UUID(message_id))
    except ValueError:
        raise NotFound(f"no message {message_id!r}") from None
