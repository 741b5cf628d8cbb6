"""Conversions between stored rows and domain values."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from odiseo.domain.models import (
    Attachment,
    AttemptResult,
    Event,
    NewEmail,
    OutgoingEmail,
    QueuedEmail,
    Status,
)
from odiseo.storage.contract import Enqueued


def to_row(item: NewEmail, *, now: datetime) -> dict[str, Any]:
    email = item.email
    later = item.send_at is not None and item.send_at > now
    return {
        "message_id": email.message_id,
        "rfc_message_id": email.rfc_message_id,
        "client_message_id": item.client_message_id,
        "idempotency_scope": item.idempotency_scope,
        "payload_hash": item.payload_hash,
        "status": Status.SCHEDULED if later else Status.PENDING,
        "priority": item.priority,
        "attempts": 0,
        "max_retries": item.max_retries,
        "next_attempt_at": item.send_at if later else now,
        "from_email": email.from_email,
        "from_name": email.from_name,
        "to_addrs": list(email.to),
        "cc_addrs": list(email.cc),
        "bcc_addrs": list(email.bcc),
        "reply_to": list(email.reply_to),
        "headers": [list(h) for h in email.headers],
        "subject": email.subject,
        "html": email.html,
        "text": email.text,
        "template_id": item.template_id,
        "template_version": item.template_version,
        "expires_at": item.expires_at,
        "attachment_count": len(email.attachments),
        "tags": list(item.tags),
        "meta": item.metadata,
        "created_at": now,
        "updated_at": now,
    }


def client_key(row: Mapping[str, Any]) -> tuple[str, str]:
    """Where a keyed row's client_message_id is unique: within its idempotency scope."""
    return (row["idempotency_scope"], row["client_message_id"])


def attachment_rows(email_id: int, attachments: tuple[Attachment, ...]) -> list[dict[str, Any]]:
    return [
        {
            "email_id": email_id,
            "position": position,
            "filename": item.filename,
            "content_type": item.content_type,
            "content_id": item.content_id,
            "data": item.data,
        }
        for position, item in enumerate(attachments)
    ]


def from_row(
    row: Mapping[Any, Any],
    *,
    events: tuple[Event, ...] = (),
    attachments: tuple[Attachment, ...] = (),
) -> QueuedEmail:
    email = OutgoingEmail(
        message_id=row["message_id"],
        rfc_message_id=row["rfc_message_id"],
        from_email=row["from_email"],
        from_name=row["from_name"],
        to=tuple(row["to_addrs"]),
        cc=tuple(row["cc_addrs"]),
        bcc=tuple(row["bcc_addrs"]),
        reply_to=tuple(row["reply_to"]),
        subject=row["subject"],
        html=row["html"],
        text=row["text"],
        headers=tuple((name, value) for name, value in row["headers"]),
        attachments=attachments,
    )
    return QueuedEmail(
        id=row["id"],
        email=email,
        status=Status(row["status"]),
        priority=row["priority"],
        attempts=row["attempts"],
        max_retries=row["max_retries"],
        next_attempt_at=row["next_attempt_at"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        sent_at=row["sent_at"],
        locked_until=row["locked_until"],
        locked_by=row["locked_by"],
        last_error=row["last_error"],
        client_message_id=row["client_message_id"],
        template_id=row["template_id"],
        template_version=row["template_version"],
        expires_at=row["expires_at"],
        tags=tuple(row["tags"]),
        metadata=dict(row["meta"]),
        events=events,
    )


def attachments_by_email(rows: Sequence[Mapping[Any, Any]]) -> dict[int, tuple[Attachment, ...]]:
    """Attachment rows, ordered by email and position, grouped per email id."""
    found: dict[int, list[Attachment]] = {}
    for row in rows:
        found.setdefault(row["email_id"], []).append(
            Attachment(
                filename=row["filename"],
                content_type=row["content_type"],
                content_id=row["content_id"],
                data=bytes(row["data"]),
            )
        )
    return {email_id: tuple(items) for email_id, items in found.items()}


def enqueued(
    rows: Sequence[Mapping[str, Any]],
    inserted: set[str],
    existing: Mapping[tuple[str, str], tuple[str, str | None]],
) -> list[Enqueued]:
    """Each row's outcome: created now, or the message already stored under its client id."""
    results = []
    for row in rows:
        if row["message_id"] in inserted:
            results.append(Enqueued(message_id=row["message_id"], created=True))
        else:
            message_id, payload_hash = existing[client_key(row)]
            same = payload_hash == row["payload_hash"]
            results.append(Enqueued(message_id=message_id, created=False, same_payload=same))
    return results


def claimed_messages(
    rows: Sequence[Mapping[str, Any]], files: Mapping[int, tuple[Attachment, ...]]
) -> list[QueuedEmail]:
    """Claimed rows as messages, in claim order (priority, due time, id)."""
    claimed = [from_row(r, attachments=files.get(r["id"], ())) for r in rows]
    return sorted(claimed, key=lambda m: (m.priority, m.next_attempt_at or m.created_at, m.id))


def event_rows(results: Sequence[AttemptResult], *, worker: str) -> list[dict[str, Any]]:
    """The history entries of finished attempts (the outcome, once each)."""
    return [
        {
            "email_id": r.email_id,
            "at": r.finished_at,
            "kind": r.outcome.value,
            "attempt": r.attempt,
            "smtp_code": r.smtp_code,
            "response": r.response,
            "duration_ms": round((r.finished_at - r.started_at).total_seconds() * 1000),
            "worker": worker,
        }
        for r in results
    ]
