"""Request and response models of the HTTP API (the email request itself, EmailIn, is
odiseo/requests.py: odiseo.transactional validates with it too)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from odiseo.requests import (
    RequestModel,
    check_json,
)

MAX_BATCH = 500


class Accepted(BaseModel):
    """The answer to POST /emails (keys of the original kept exactly)."""

    status: str = "accepted"
    queued: bool = True
    message_id: str
    detail: str
    timestamp: datetime
    duplicate: bool = False
    suppressed: list[str] = Field(
        default=[], description="recipients on the suppression list: they will be skipped"
    )


class QueueStatus(BaseModel):
    pending: int
    scheduled: int
    processing: int
    sent: int
    failed: int
    cancelled: int
    suppressed: int
    oldest_pending_seconds: float
    timestamp: datetime


class Health(BaseModel):
    status: str
    db: str
    email_provider: str
    version: str
    timestamp: datetime
    detail: str | None = None


class BatchIn(RequestModel):
    """Up to 500 emails stored in one transaction."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "emails": [
                        {"to": ["a@example.com"], "subject": "Hi A", "body": "<p>Hello</p>"},
                        {"to": ["b@example.com"], "subject": "Hi B", "body": "<p>Hello</p>"},
                    ],
                    "atomic": False,
                }
            ]
        },
    )

    emails: list[dict[str, Any]] = Field(
        min_length=1, max_length=MAX_BATCH, description="each item is a POST /emails body"
    )

    @model_validator(mode="before")
    @classmethod
    def _sane(cls, data: Any) -> Any:
        # Each email is checked on its own, so one bad item gets its own result.
        if isinstance(data, dict):
            check_json({k: v for k, v in data.items() if k != "emails"}, "")
        return data

    atomic: bool = Field(default=False, description="store nothing unless every item is valid")


class BatchItemOut(BaseModel):
    index: int
    status: str = Field(description="accepted, duplicate or error")
    message_id: str | None = None
    detail: str | None = None
    suppressed: list[str] = Field(
        default=[], description="recipients on the suppression list: they will be skipped"
    )


class BatchOut(BaseModel):
    status: str = Field(description="accepted, partial or rejected")
    accepted: int
    rejected: int
    results: list[BatchItemOut]
    timestamp: datetime


class TemplateOut(BaseModel):
    """A stored template (versioned, editable through the API) or a file template
    (TEMPLATES_DIR or shipped with Odiseo: no version, no dates)."""

    model_config = ConfigDict(from_attributes=True)

    id: str
    source: Literal["stored", "file"] = "stored"
    version: int | None = None
    subject: str | None
    html: str
    text: str | None
    variables: list[str] | None = Field(
        default=None, description="the template_vars a send must give"
    )
    optional_variables: list[str] | None = Field(
        default=None, description="template_vars it uses when given (`default`, `is defined`)"
    )
    sample_variables: dict[str, Any] | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None


class RenderIn(RequestModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"variables": {"name": "Ana"}}]}
    )

    variables: dict[str, Any] = Field(default_factory=dict)


class RenderOut(BaseModel):
    subject: str | None
    html: str
    text: str


class EventOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    at: datetime
    kind: str
    type: str | None = Field(description="the published event type, if this entry is one")
    recipient: str | None
    data: dict[str, Any] | None
    attempt: int | None
    smtp_code: int | None
    response: str | None
    duration_ms: int | None
    worker: str | None


class AttachmentOut(BaseModel):
    filename: str
    content_type: str
    content_id: str | None
    size: int


class EmailSummary(BaseModel):
    """A stored message: where it is and what it was."""

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
    template_version: int | None
    expires_at: datetime | None
    tags: list[str]
    metadata: dict[str, Any]


class EmailOut(EmailSummary):
    """A stored message with its attachments and its whole history."""

    attachments: list[AttachmentOut]
    events: list[EventOut]


class EmailPage(BaseModel):
    items: list[EmailSummary]
    next_cursor: str | None = Field(description="pass as ?cursor= for the next page")


class Requeued(BaseModel):
    requeued: int
    status: str


class Problem(BaseModel):
    detail: str
