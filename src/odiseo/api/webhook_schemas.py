"""Request and response models of /webhooks. No answer but the create and the rotate
ones carries a secret."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from odiseo.domain.events import EventType
from odiseo.domain.webhooks import Delivery, DeliveryStatus, Endpoint
from odiseo.requests import RequestModel, utc
from odiseo.webhooks.ssrf import MAX_URL_CHARS

MAX_DESCRIPTION = 500
_EXAMPLE: dict[str, Any] = {
    "url": "https://hooks.example.com/odiseo",
    "events": ["email.sent", "email.bounced"],
    "description": "order service",
}


def _unique(events: list[EventType] | None) -> list[EventType] | None:
    return None if events is None else list(dict.fromkeys(events))


class WebhookIn(RequestModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [_EXAMPLE]})

    url: str = Field(max_length=MAX_URL_CHARS, description="https, globally routable")
    events: list[EventType] = Field(
        default_factory=list, max_length=50, description="types to receive; empty: all"
    )
    description: str | None = Field(default=None, max_length=MAX_DESCRIPTION)

    _dedupe = field_validator("events")(_unique)


class WebhookPatch(RequestModel):
    """The fields to change; those left out stay as they are."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"enabled": True}]})

    url: str | None = Field(default=None, max_length=MAX_URL_CHARS)
    events: list[EventType] | None = Field(default=None, max_length=50)
    description: str | None = Field(default=None, max_length=MAX_DESCRIPTION)
    enabled: bool | None = Field(
        default=None, description="true re-enables (forgetting past failures)"
    )

    _dedupe = field_validator("events")(_unique)

    @field_validator("url", "events", "enabled")
    @classmethod
    def _not_null(cls, value: object) -> object:
        if value is None:
            raise ValueError("may be left out, not null")
        return value


class WebhookOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    url: str
    description: str | None
    events: list[str]
    enabled: bool
    created_at: datetime
    updated_at: datetime
    failing_since: datetime | None = Field(description="first failure since the last success")
    disabled_reason: str | None

    @classmethod
    def of(cls, endpoint: Endpoint) -> WebhookOut:
        return cls.model_validate(endpoint)


class WebhookCreated(WebhookOut):
    secret: str = Field(description="the signing secret (whsec_…): shown this once only")


class SecretRotated(BaseModel):
    id: str
    secret: str = Field(description="the new signing secret: shown this once only")
    previous_valid_until: datetime = Field(description="the old secret also signs until then")


class AttemptOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    at: datetime
    status_code: int | None
    duration_ms: int
    response: str | None = Field(description="the first 500 characters of the answer")
    error: str | None = Field(description="why there was no answer (timeout, refused address…)")


class DeliveryOut(BaseModel):
    id: int
    webhook_id: str = Field(description="the webhook-id header, the same on every retry")
    event_id: int
    event_type: str
    status: DeliveryStatus
    attempts: int
    next_attempt_at: datetime | None
    last_status_code: int | None
    created_at: datetime
    updated_at: datetime
    history: list[AttemptOut]

    @classmethod
    def of(cls, delivery: Delivery) -> DeliveryOut:
        return cls(
            id=delivery.id,
            webhook_id=delivery.webhook_id,
            event_id=delivery.event_id,
            event_type=delivery.event_type,
            status=delivery.status,
            attempts=delivery.attempts,
            next_attempt_at=delivery.next_attempt_at,
            last_status_code=delivery.last_status_code,
            created_at=delivery.created_at,
            updated_at=delivery.updated_at,
            history=[AttemptOut.model_validate(a) for a in delivery.history],
        )


class DeliveryPage(BaseModel):
    items: list[DeliveryOut]
    next_cursor: str | None = Field(description="pass as ?cursor= for the next page")


class ReplayIn(RequestModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"since": "2026-12-01T00:00:00Z"}]}
    )

    since: datetime = Field(description="replay every failed delivery created since then")

    @field_validator("since")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        return utc(value)


class Replayed(BaseModel):
    replayed: int
