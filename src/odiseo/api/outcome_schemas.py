"""What GET /events and /suppressions answer, and what PUT /suppressions/{address} takes."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from odiseo.domain.models import PublishedEvent, Suppression, SuppressionReason
from odiseo.requests import RequestModel


class PublishedEventOut(BaseModel):
    """One event, as webhooks deliver it in `data`, with its id and type beside."""

    id: str = Field(description="the event's id; pass as ?cursor= to continue below it")
    type: str
    at: datetime
    message_id: str | None
    client_message_id: str | None
    recipient: str | None = Field(description="per-recipient events: whom it is about")
    recipients: list[str] = Field(description="the message's recipients")
    tags: list[str]
    metadata: dict[str, Any]
    attempt: int | None
    smtp_code: int | None
    response: str | None
    data: dict[str, Any] | None

    @classmethod
    def of(cls, item: PublishedEvent, *, cursor: str) -> PublishedEventOut:
        event = item.event
        return cls(
            id=cursor,
            type=event.type or "",
            at=event.at,
            message_id=item.message_id,
            client_message_id=item.client_message_id,
            recipient=event.recipient,
            recipients=list(item.recipients),
            tags=list(item.tags),
            metadata=item.metadata,
            attempt=event.attempt,
            smtp_code=event.smtp_code,
            response=event.response,
            data=event.data,
        )


class EventPage(BaseModel):
    items: list[PublishedEventOut]
    next_cursor: str | None = Field(description="pass as ?cursor= for the next page")


class SuppressionOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    address: str = Field(description="normalised: trimmed and lower-cased")
    reason: SuppressionReason
    message_id: str | None = Field(description="the message whose outcome caused it")
    detail: str | None = Field(description="the SMTP reply, or the operator's note")
    created_at: datetime

    @classmethod
    def of(cls, entry: Suppression) -> SuppressionOut:
        return cls.model_validate(entry)


class SuppressionPage(BaseModel):
    items: list[SuppressionOut]
    next_cursor: str | None = Field(description="pass as ?cursor= for the next page")


class SuppressionIn(RequestModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"reason": "manual", "detail": "asked by phone"}]},
    )

    reason: SuppressionReason = SuppressionReason.MANUAL
    detail: str | None = Field(default=None, max_length=500)
