"""What Odiseo stores and sends, as frozen values."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


class Status(enum.StrEnum):
    """Where a message is in its lifecycle (README, "How a message moves")."""

    PENDING = "pending"
    SCHEDULED = "scheduled"
    PROCESSING = "processing"
    SENT = "sent"
    FAILED = "failed"
    CANCELLED = "cancelled"
    SUPPRESSED = "suppressed"  # every recipient is on the suppression list: never tried


class FailureKind(enum.StrEnum):
    """How a delivery attempt failed, which decides whether it is retried."""

    TRANSIENT = "transient"
    PERMANENT = "permanent"


@dataclass(frozen=True, kw_only=True)
class EmailFilter:
    """What GET /emails narrows the list to; every field is optional."""

    status: Status | None = None
    tag: str | None = None
    recipient: str | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None


@dataclass(frozen=True, kw_only=True)
class StoredTemplate:
    """A template kept in the store; each save makes a new version."""

    id: str
    version: int
    subject: str | None
    html: str
    text: str | None
    created_at: datetime
    updated_at: datetime
    # Values a save renders the template with (limits checked), and a preview may use.
    sample_variables: dict[str, Any] | None = None
    created: bool = False  # this save made the template exist (again)
    # What it reads from a request (needed; tested or defaulted), when worked out.
    variables: tuple[str, ...] | None = None
    optional_variables: tuple[str, ...] | None = None
    source: str = "stored"


@dataclass(frozen=True, kw_only=True)
class FileTemplate:
    """A template kept as files in TEMPLATES_DIR, or shipped with Odiseo; read-only."""

    id: str
    subject: str | None
    html: str
    text: str | None
    variables: tuple[str, ...]
    optional_variables: tuple[str, ...]
    source: str = "file"


class Outcome(enum.StrEnum):
    """What an attempt led to, as recorded in the event log."""

    SENT = "sent"
    RETRY = "retry"
    FAILED = "failed"
    SUPPRESSED = "suppressed"


@dataclass(frozen=True, kw_only=True)
class Refusal:
    """A recipient the relay refused at RCPT, with its reply."""

    recipient: str
    code: int
    response: str
    permanent: bool
    suppress: bool = True  # False for the simulator's addresses, which never are


class SuppressionReason(enum.StrEnum):
    HARD_BOUNCE = "hard_bounce"
    COMPLAINT = "complaint"
    MANUAL = "manual"
    UNSUBSCRIBE = "unsubscribe"


@dataclass(frozen=True, kw_only=True)
class Suppression:
    """An address Odiseo no longer sends to, and why."""

    address: str
    reason: SuppressionReason
    created_at: datetime
    message_id: str | None = None  # the message that caused it, if one did
    detail: str | None = None  # the SMTP reply or the operator's note


@dataclass(frozen=True, kw_only=True)
class Attachment:
    """A file sent with a message; with a content_id it is inline (cid: in the HTML)."""

    filename: str
    content_type: str
    data: bytes = field(repr=False)
    content_id: str | None = None


@dataclass(frozen=True, kw_only=True)
class OutgoingEmail:
    """Everything needed to build the MIME message, fixed at enqueue time."""

    message_id: str
    rfc_message_id: str
    from_email: str
    from_name: str | None
    to: tuple[str, ...]
    cc: tuple[str, ...] = ()
    bcc: tuple[str, ...] = ()
    reply_to: tuple[str, ...] = ()
    subject: str
    html: str | None
    text: str | None
    headers: tuple[tuple[str, str], ...] = ()
    attachments: tuple[Attachment, ...] = ()
    list_unsubscribe: str | None = None  # the one-click unsubscribe URL (unsubscribe.py)
    # The whole message as an application submitted it over SMTP (smtp/submission.py):
    # sent as it is, its MIME structure untouched; the fields above only describe it.
    raw: bytes | None = field(default=None, repr=False)

    @property
    def recipients(self) -> tuple[str, ...]:
        """Every envelope recipient, Bcc included, each once."""
        return tuple(dict.fromkeys((*self.to, *self.cc, *self.bcc)))


@dataclass(frozen=True, kw_only=True)
class NewEmail:
    """A message about to be enqueued, with its scheduling and bookkeeping."""

    email: OutgoingEmail
    priority: int
    max_retries: int
    send_at: datetime | None = None
    client_message_id: str | None = None
    idempotency_scope: str = ""  # whose client_message_id it is: one namespace per API key
    payload_hash: str | None = None
    template_id: str | None = None
    template_version: int | None = None
    expires_at: datetime | None = None
    tags: tuple[str, ...] = ()
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class EnqueueSettings:
    """The service's rules the SQL function enqueue() applies too, published into the
    database at every migration so that both agree (storage/enqueue_function.py)."""

    from_email: str  # the default sender, always allowed
    from_name: str | None
    allowed_senders: tuple[str, ...]  # a@b and @domain entries, lower case, xn-- form
    message_id_domain: str  # the right-hand side of each Message-ID
    max_message_bytes: int
    max_retries: int


@dataclass(frozen=True, kw_only=True)
class Event:
    """One entry of a message's history; with a `type` it is also a published event
    (domain/events.py), which GET /events lists and webhooks deliver."""

    at: datetime
    kind: str
    id: int = 0
    type: str | None = None
    recipient: str | None = None
    data: dict[str, Any] | None = None
    attempt: int | None = None
    smtp_code: int | None = None
    response: str | None = None
    accepted: tuple[str, ...] = ()  # recipients the relay took
    refused: tuple[Refusal, ...] = ()  # recipients the relay refused at RCPT
    suppressed: tuple[str, ...] = ()  # recipients skipped: on the suppression list
    duration_ms: int | None = None
    worker: str | None = None


@dataclass(frozen=True, kw_only=True)
class PublishedEvent:
    """A typed event with what it is about, as GET /events and webhooks show it."""

    event: Event
    message_id: str | None = None
    client_message_id: str | None = None
    recipients: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class EventFilter:
    """What GET /events narrows the list to; every field is optional."""

    type: str | None = None
    message_id: str | None = None
    recipient: str | None = None
    after: datetime | None = None
    before: datetime | None = None


@dataclass(frozen=True, kw_only=True)
class QueuedEmail:
    """A stored message with its queue state."""

    id: int
    email: OutgoingEmail
    status: Status
    priority: int
    attempts: int
    max_retries: int
    next_attempt_at: datetime | None
    created_at: datetime
    updated_at: datetime
    sent_at: datetime | None = None
    locked_until: datetime | None = None
    locked_by: str | None = None
    last_error: str | None = None
    client_message_id: str | None = None
    template_id: str | None = None
    template_version: int | None = None
    expires_at: datetime | None = None
    tags: tuple[str, ...] = ()
    metadata: dict[str, Any] = field(default_factory=dict)
    events: tuple[Event, ...] = ()
    suppressed: tuple[str, ...] = ()  # recipients on the suppression list when claimed

    @property
    def message_id(self) -> str:
        return self.email.message_id


@dataclass(frozen=True, kw_only=True)
class AttemptResult:
    """What one delivery attempt of a claimed message ended in."""

    email_id: int
    attempt: int
    outcome: Outcome
    message_id: str | None = None
    started_at: datetime
    finished_at: datetime
    next_attempt_at: datetime | None = None
    smtp_code: int | None = None
    response: str | None = None
    accepted: tuple[str, ...] = ()  # recipients the relay took
    refused: tuple[Refusal, ...] = ()  # recipients the relay refused at RCPT
    suppressed: tuple[str, ...] = ()  # recipients skipped: on the suppression list
    relay_message_id: str | None = None  # the relay's id for the message (its DATA reply)


@dataclass(frozen=True, kw_only=True)
class Erased:
    """What an erasure removed."""

    messages: int
    events: int
    suppression: bool


@dataclass(frozen=True, kw_only=True)
class AuditEntry:
    id: int
    at: datetime
    actor: str
    action: str
    target: str
    status_code: int
