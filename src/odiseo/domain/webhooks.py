"""Webhook endpoints and deliveries, as values; the retry schedule; the payload.

Pure: the store keeps these, `odiseo.webhooks` sends them. The payload is built once,
when an event is fanned out to an endpoint, and stored with the delivery, so every
retry sends the same bytes under the same `webhook-id` (Standard Webhooks).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from odiseo.domain.events import PER_RECIPIENT
from odiseo.domain.models import PublishedEvent

# Seconds before each attempt of a delivery: the first at once, the last about 28 h
# after the event (issue 13: "retried with backoff for at least a day").
RETRY_SCHEDULE: tuple[float, ...] = (0, 5, 300, 1800, 7200, 18000, 36000, 36000)
SECRET_OVERLAP = timedelta(hours=24)  # a rotated secret keeps signing this long
EXCERPT_CHARS = 500  # of a receiver's answer, kept per attempt


class DeliveryStatus(enum.StrEnum):
    PENDING = "pending"  # due at next_attempt_at (or leased to a worker until then)
    SUCCEEDED = "succeeded"  # a 2xx answer
    FAILED = "failed"  # retries spent, 410 Gone, or its endpoint was disabled


@dataclass(frozen=True, kw_only=True)
class Endpoint:
    """A receiver of events. `secrets` sign each delivery: the current one first, and a
    rotated one until its overlap ends; they never leave the store but to sign."""

    id: str
    url: str
    description: str | None
    events: tuple[str, ...]  # the types it receives; empty: every type
    enabled: bool
    created_at: datetime
    updated_at: datetime
    failing_since: datetime | None = None
    disabled_reason: str | None = None
    secrets: tuple[str, ...] = field(default=(), repr=False)

    def wants(self, event_type: str) -> bool:
        return not self.events or event_type in self.events


@dataclass(frozen=True, kw_only=True)
class Attempt:
    """One POST of a delivery and what came back."""

    at: datetime
    duration_ms: int
    status_code: int | None = None
    response: str | None = None  # the first EXCERPT_CHARS of the answer
    error: str | None = None  # why there was no usable answer (timeout, refused address…)


@dataclass(frozen=True, kw_only=True)
class Delivery:
    """One event for one endpoint, tried until a 2xx or the schedule ends."""

    id: int
    endpoint_id: str
    webhook_id: str  # the `webhook-id` header: the same for every retry
    event_id: int
    event_type: str
    status: DeliveryStatus
    attempts: int
    next_attempt_at: datetime | None
    created_at: datetime
    updated_at: datetime
    last_status_code: int | None = None
    history: tuple[Attempt, ...] = ()


@dataclass(frozen=True, kw_only=True)
class Claimed:
    """A delivery leased to a worker, with what it needs to send it."""

    id: int
    endpoint_id: str
    url: str
    secrets: tuple[str, ...] = field(repr=False)
    webhook_id: str
    payload: bytes
    attempt: int  # this attempt's number, from 1


@dataclass(frozen=True, kw_only=True)
class Verdict:
    """What an attempt leads to, decided by `judge`."""

    status: DeliveryStatus
    next_attempt_at: datetime | None = None
    gone: bool = False  # 410: the receiver asks to be disabled


def judge(
    attempt: int, status_code: int | None, *, now: datetime, schedule: tuple[float, ...]
) -> Verdict:
    """A 2xx succeeds; 410 gives up and disables; anything else is tried again on the
    schedule until it ends."""
    if status_code is not None and 200 <= status_code < 300:
        return Verdict(status=DeliveryStatus.SUCCEEDED)
    if status_code == 410:
        return Verdict(status=DeliveryStatus.FAILED, gone=True)
    if attempt >= len(schedule):
        return Verdict(status=DeliveryStatus.FAILED)
    later = now + timedelta(seconds=schedule[attempt])
    return Verdict(status=DeliveryStatus.PENDING, next_attempt_at=later)


def payload(published: PublishedEvent) -> dict[str, Any]:
    """The body of a delivery: `{"type", "timestamp", "data"}` (Standard Webhooks)."""
    event = published.event
    data: dict[str, Any] = {"event_id": event.id}
    if published.message_id is not None:
        data |= {
            "message_id": published.message_id,
            "client_message_id": published.client_message_id,
            "tags": list(published.tags),
            "metadata": published.metadata,
        }
        if event.type in PER_RECIPIENT and event.recipient is not None:
            data["recipient"] = event.recipient
        else:
            data["recipients"] = list(published.recipients)
        if event.smtp_code is not None or event.response is not None:
            data["smtp_code"] = event.smtp_code
            data["response"] = event.response
    data.update(event.data or {})
    return {
        "type": event.type,
        "timestamp": event.at.isoformat().replace("+00:00", "Z"),
        "data": data,
    }
