"""Request and response models of the HTTP API."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    EmailStr,
    Field,
    field_validator,
)

from odiseo.service import DEFAULT_PRIORITY, EmailRequest

MAX_RECIPIENTS = 50
MAX_BODY_CHARS = 5_000_000
_HEADER_NAME = re.compile(r"^[!-9;-~]{1,76}$")  # printable ASCII, no colon (RFC 5322 ftext)
_RESERVED_HEADERS = frozenset(
    [
        "from",
        "to",
        "cc",
        "bcc",
        "subject",
        "message-id",
        "date",
        "sender",
        "reply-to",
        "mime-version",
        "content-type",
        "content-transfer-encoding",
        "return-path",
    ]
)


def _single_line(value: str) -> str:
    if any(c in value for c in "\r\n\0"):
        raise ValueError("must not contain line breaks (CR, LF) or NUL")
    return value


HeaderText = Annotated[str, AfterValidator(_single_line)]


class EmailIn(BaseModel):
    """An email to send. `to` is required; so is a body (`body`, `text` or `template_id`)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "to": ["recipient@example.com"],
                    "subject": "Hello from Odiseo",
                    "body": "<h1>Welcome!</h1><p>Your email service is working.</p>",
                }
            ]
        },
    )

    to: list[EmailStr] = Field(min_length=1, max_length=MAX_RECIPIENTS)
    subject: HeaderText | None = Field(default=None, max_length=998)
    body: str | None = Field(default=None, max_length=MAX_BODY_CHARS, description="HTML body")
    text: str | None = Field(
        default=None, max_length=MAX_BODY_CHARS, description="plain-text part; derived from body"
    )
    cc: list[EmailStr] = Field(default_factory=list, max_length=MAX_RECIPIENTS)
    bcc: list[EmailStr] = Field(default_factory=list, max_length=MAX_RECIPIENTS)
    reply_to: list[EmailStr] | EmailStr | None = None
    from_email: EmailStr | None = None
    from_name: HeaderText | None = Field(default=None, max_length=255)
    headers: dict[str, HeaderText] = Field(default_factory=dict, max_length=50)
    priority: int = Field(default=DEFAULT_PRIORITY, ge=0, le=9, description="0 is sent first")
    send_at: datetime | None = Field(default=None, description="not before this time (ISO 8601)")
    client_message_id: str | None = Field(default=None, min_length=1, max_length=255)
    template_id: str | None = Field(default=None, min_length=1, max_length=128)
    template_vars: dict[str, Any] = Field(default_factory=dict)
    tags: list[Annotated[str, Field(min_length=1, max_length=64)]] = Field(
        default_factory=list, max_length=20
    )
    metadata: dict[str, Any] = Field(default_factory=dict)

    @field_validator("headers")
    @classmethod
    def _header_names(cls, headers: dict[str, str]) -> dict[str, str]:
        for name, value in headers.items():
            if not _HEADER_NAME.match(name):
                raise ValueError(f"{name!r} is not a valid header name")
            if name.lower() in _RESERVED_HEADERS:
                raise ValueError(f"{name} is set by Odiseo and cannot be overridden")
            if len(value) > 998:
                raise ValueError(f"{name}: value longer than 998 characters")
        return headers

    @field_validator("metadata")
    @classmethod
    def _small_metadata(cls, metadata: dict[str, Any]) -> dict[str, Any]:
        if len(json.dumps(metadata)) > 4096:
            raise ValueError("must be at most 4096 bytes as JSON")
        return metadata

    @field_validator("send_at")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)  # a time without zone is taken as UTC
        return value

    def to_request(self) -> EmailRequest:
        reply_to = self.reply_to if isinstance(self.reply_to, list) else [self.reply_to or ""]
        return EmailRequest(
            to=tuple(self.to),
            subject=self.subject,
            html=self.body,
            text=self.text,
            cc=tuple(self.cc),
            bcc=tuple(self.bcc),
            reply_to=tuple(a for a in reply_to if a),
            from_email=self.from_email,
            from_name=self.from_name,
            headers=tuple(self.headers.items()),
            priority=self.priority,
            send_at=self.send_at,
            client_message_id=self.client_message_id,
            template_id=self.template_id,
            template_vars=self.template_vars,
            tags=tuple(self.tags),
            metadata=self.metadata,
        )


class Accepted(BaseModel):
    """The answer to POST /emails (keys of the original kept exactly)."""

    status: str = "accepted"
    queued: bool = True
    message_id: str
    detail: str
    timestamp: datetime
    duplicate: bool = False


class QueueStatus(BaseModel):
    pending: int
    scheduled: int
    processing: int
    sent: int
    failed: int
    cancelled: int
    oldest_pending_seconds: float
    timestamp: datetime


class Health(BaseModel):
    status: str
    db: str
    email_provider: str
    version: str
    timestamp: datetime
    detail: str | None = None


class EventOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    at: datetime
    kind: str
    attempt: int | None
    smtp_code: int | None
    response: str | None
    duration_ms: int | None
    worker: str | None


class EmailOut(BaseModel):
    """A stored message: where it is, what happened to it, what it was."""

    message_id: str
    rfc_message_id: str
    client_message_id: str | None
    status: str
    attempts: int
    max_retries: int
    priority: int
    last_error: str | None
    created_at: datetime
    updated_at: datetime
    next_attempt_at: datetime | None
    sent_at: datetime | None
    from_email: str
    to: list[str]
    cc: list[str]
    bcc: list[str]
    subject: str
    template_id: str | None
    tags: list[str]
    metadata: dict[str, Any]
    events: list[EventOut]


class Requeued(BaseModel):
    requeued: int
    status: str


class Problem(BaseModel):
    detail: str
