"""Typed results: each a frozen dataclass of the fields Odiseo documents, plus `raw`
(the whole JSON object, for fields newer than this client)."""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Any, TypeVar, get_type_hints

T = TypeVar("T")


def parse(cls: type[T], data: dict[str, Any]) -> T:
    """`cls` from a JSON object: known fields taken (times parsed), the rest kept in raw."""
    hints = get_type_hints(cls)
    values: dict[str, Any] = {}
    for field in dataclasses.fields(cls):  # type: ignore[arg-type]
        if field.name == "raw":
            continue
        value = data.get(field.name)
        if isinstance(value, str) and "datetime" in str(hints[field.name]):
            value = datetime.fromisoformat(value.replace("Z", "+00:00"))
        values[field.name] = value
    return cls(**values, raw=data)  # type: ignore[call-arg]


@dataclasses.dataclass(frozen=True, kw_only=True)
class Accepted:
    """The answer to a send: stored (or already stored, `duplicate`)."""

    message_id: str
    status: str
    queued: bool
    duplicate: bool
    suppressed: list[str] | None
    detail: str | None
    timestamp: datetime | None
    raw: dict[str, Any] = dataclasses.field(repr=False)


@dataclasses.dataclass(frozen=True, kw_only=True)
class BatchItem:
    index: int
    status: str
    message_id: str | None
    detail: str | None
    suppressed: list[str] | None
    raw: dict[str, Any] = dataclasses.field(repr=False)


@dataclasses.dataclass(frozen=True, kw_only=True)
class BatchResult:
    """Each item's result, in the order sent; `accepted` of them were stored."""

    status: str
    accepted: int
    rejected: int
    results: list[BatchItem]
    raw: dict[str, Any] = dataclasses.field(repr=False)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Email:
    """A message and what became of it (`events` is its history)."""

    message_id: str
    status: str
    attempts: int
    to: list[str]
    subject: str | None
    template_id: str | None
    tags: list[str] | None
    metadata: dict[str, Any] | None
    last_error: str | None
    created_at: datetime
    next_attempt_at: datetime | None
    sent_at: datetime | None
    events: list[dict[str, Any]] | None
    raw: dict[str, Any] = dataclasses.field(repr=False)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Template:
    """A stored template (versioned) or a file template (`source` "file", no version)."""

    id: str
    source: str
    version: int | None
    subject: str | None
    html: str
    text: str | None
    variables: list[str] | None
    optional_variables: list[str] | None
    raw: dict[str, Any] = dataclasses.field(repr=False)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Rendered:
    subject: str | None
    html: str
    text: str
    raw: dict[str, Any] = dataclasses.field(repr=False)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Suppression:
    address: str
    reason: str
    message_id: str | None
    detail: str | None
    created_at: datetime
    raw: dict[str, Any] = dataclasses.field(repr=False)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Event:
    at: datetime
    type: str | None
    kind: str | None
    recipient: str | None
    data: dict[str, Any] | None
    raw: dict[str, Any] = dataclasses.field(repr=False)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Webhook:
    """A webhook endpoint; `secret` only in the answer that created it."""

    id: str
    url: str
    description: str | None
    events: list[str]
    enabled: bool
    failing_since: datetime | None
    disabled_reason: str | None
    secret: str | None
    raw: dict[str, Any] = dataclasses.field(repr=False)


@dataclasses.dataclass(frozen=True, kw_only=True)
class SecretRotated:
    id: str
    secret: str
    previous_valid_until: datetime
    raw: dict[str, Any] = dataclasses.field(repr=False)


@dataclasses.dataclass(frozen=True, kw_only=True)
class QueueStatus:
    pending: int
    scheduled: int
    processing: int
    sent: int
    failed: int
    cancelled: int
    suppressed: int
    raw: dict[str, Any] = dataclasses.field(repr=False)
