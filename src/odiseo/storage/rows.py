"""Conversions between stored rows and domain values."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from datetime import datetime
from typing import Any

from odiseo.domain.bounces import bad_address, normalise_address
from odiseo.domain.events import OF_OUTCOME, EventType
from odiseo.domain.models import (
    Attachment,
    AttemptResult,
    Event,
    NewEmail,
    Outcome,
    OutgoingEmail,
    QueuedEmail,
    Status,
    SuppressionReason,
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
        "list_unsubscribe": email.list_unsubscribe,
        "subject": email.subject,
        "html": email.html,
        "text": email.text,
        "template_id": item.template_id,
        "template_version": item.template_version,
        "expires_at": item.expires_at,
        "attachment_count": len(email.attachments),
        "raw_message": email.raw,
        "tags": list(item.tags),
        "meta": item.metadata,
        "created_at": now,
        "updated_at": now,
    }


def event_of(row: Mapping[str, Any]) -> Event:
    """A history row as an Event."""
    return Event(
        id=row["id"],
        at=row["at"],
        kind=row["kind"],
        type=row["type"],
        recipient=row["recipient"],
        data=row["data"],
        attempt=row["attempt"],
        smtp_code=row["smtp_code"],
        response=row["response"],
        duration_ms=row["duration_ms"],
        worker=row["worker"],
    )


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
    barred: Collection[str] = (),
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
        list_unsubscribe=row["list_unsubscribe"],
        attachments=attachments,
        raw=_bytes(row["raw_message"]),
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
        suppressed=tuple(a for a in email.recipients if barred and normalise_address(a) in barred),
        events=events,
    )


def _bytes(value: Any) -> bytes | None:
    """A binary column as bytes (asyncpg gives bytes, SQLite may give a memoryview)."""
    return None if value is None else bytes(value)


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
    barred: Collection[str] = (),
) -> list[Enqueued]:
    """Each row's outcome: created now (with its recipients on the suppression list,
    `barred` being normalised addresses), or the message already stored under its
    client id."""
    results = []
    for row in rows:
        if row["message_id"] in inserted:
            skipped = _barred(row, barred) if barred else ()
            results.append(Enqueued(message_id=row["message_id"], created=True, suppressed=skipped))
        elif (found := existing.get(client_key(row))) is None:
            # Skipped, yet not in its scope: before c001 (contract), 1.0's index keeps a
            # key unique across scopes. Taken, and which message holds it is not said.
            results.append(Enqueued(message_id="", created=False, same_payload=False))
        else:
            message_id, payload_hash = found
            same = payload_hash == row["payload_hash"]
            results.append(Enqueued(message_id=message_id, created=False, same_payload=same))
    return results


def _barred(row: Mapping[str, Any], barred: Collection[str]) -> tuple[str, ...]:
    addresses = dict.fromkeys([*row["to_addrs"], *row["cc_addrs"], *row["bcc_addrs"]])
    return tuple(a for a in addresses if normalise_address(a) in barred)


def claimed_messages(
    rows: Sequence[Mapping[str, Any]],
    files: Mapping[int, tuple[Attachment, ...]],
    barred: Collection[str] = (),
) -> list[QueuedEmail]:
    """Claimed rows as messages, in claim order (priority, due time, id), each with its
    recipients that are on the suppression list (`barred`, normalised)."""
    claimed = [from_row(r, attachments=files.get(r["id"], ()), barred=barred) for r in rows]
    return sorted(claimed, key=lambda m: (m.priority, m.next_attempt_at or m.created_at, m.id))


def recipients_of(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """Every recipient of these message rows, normalised, each once."""
    found: dict[str, None] = {}
    for row in rows:
        for column in ("to_addrs", "cc_addrs", "bcc_addrs"):
            found.update((normalise_address(a), None) for a in row[column])
    return list(found)


def event_rows(results: Sequence[AttemptResult], *, worker: str) -> list[dict[str, Any]]:
    """The history entries of finished attempts: the outcome, once each, typed as the
    event it publishes (domain/events.py)."""
    rows = []
    for r in results:
        type_ = OF_OUTCOME[r.outcome]
        rows.append(
            {
                "email_id": r.email_id,
                "at": r.finished_at,
                "kind": r.outcome.value,
                "type": type_ and type_.value,
                "data": _outcome_data(r),
                "webhook_pending": type_ is not None,
                "attempt": r.attempt,
                "smtp_code": r.smtp_code,
                "response": r.response,
                "duration_ms": round((r.finished_at - r.started_at).total_seconds() * 1000),
                "worker": worker,
            }
        )
    return rows


def _outcome_data(result: AttemptResult) -> dict[str, Any] | None:
    refused = [
        {"recipient": r.recipient, "smtp_code": r.code, "response": r.response}
        for r in result.refused
    ]
    if result.outcome is Outcome.SENT:
        return {"accepted": list(result.accepted), "refused": refused}
    if result.outcome is Outcome.RETRY:
        retry = result.next_attempt_at
        return {"reason": result.response, "next_attempt_at": retry and retry.isoformat()}
    if result.outcome is Outcome.FAILED:
        return {"reason": result.response, "refused": refused}
    return None


def recipient_event_rows(results: Sequence[AttemptResult], *, worker: str) -> list[dict[str, Any]]:
    """The per-recipient events of finished attempts, written only beside an outcome
    logged for the first time: a recipient refused for good (email.bounced), and one
    skipped because it is suppressed (email.suppressed)."""
    rows = []
    for r in results:
        base = {
            "email_id": r.email_id,
            "attempt": r.attempt,
            "at": r.finished_at,
            "worker": worker,
            "webhook_pending": True,
        }
        for refusal in r.refused:
            if refusal.permanent:
                rows.append(
                    {
                        **base,
                        "kind": "bounced",
                        "type": EventType.EMAIL_BOUNCED.value,
                        "recipient": refusal.recipient,
                        "smtp_code": refusal.code,
                        "response": refusal.response,
                    }
                )
        for address in r.suppressed:
            rows.append(
                {
                    **base,
                    "kind": "skipped",
                    "type": EventType.EMAIL_SUPPRESSED.value,
                    "recipient": address,
                    "smtp_code": None,
                    "response": "on the suppression list",
                }
            )
    return rows


def suppression_rows(results: Sequence[AttemptResult]) -> list[dict[str, Any]]:
    """The addresses these attempts prove bad (domain/bounces.py): refused at RCPT with
    a reply that says the mailbox or address does not exist."""
    rows = []
    for r in results:
        for refusal in r.refused:
            if refusal.suppress and bad_address(refusal.code, refusal.response):
                rows.append(
                    {
                        "email_id": r.email_id,
                        "attempt": r.attempt,
                        "address": normalise_address(refusal.recipient),
                        "reason": SuppressionReason.HARD_BOUNCE.value,
                        "message_id": r.message_id,
                        "detail": refusal.response,
                    }
                )
    return rows
