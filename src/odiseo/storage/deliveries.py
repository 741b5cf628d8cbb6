"""The webhook fan-out and delivery verbs, in SQLAlchemy Core for both engines.

Fan-out: the store writes every published event with `webhook_pending` set, in the
transaction of the change that causes it. `fan_out` takes marked events in id order
(FOR UPDATE SKIP LOCKED on PostgreSQL; under BEGIN IMMEDIATE on SQLite), inserts one
delivery per enabled endpoint that wants the type, and clears the marks, in one
transaction: each event is fanned out exactly once, by whichever worker takes it. A
cursor ("events after id N") would skip an event committed after a higher id; a
mark cannot be skipped. With no endpoint, the marks are just cleared.

Delivery: due deliveries of enabled endpoints are claimed like emails, the claim
moving `next_attempt_at` to the lease end (so a delivery whose worker was killed is
due again once its lease runs out) and committed before any HTTP traffic. A claim
takes at most `per_endpoint` deliveries of one endpoint, and none of the endpoints
the caller says are busy, so a slow receiver never fills a worker's slots.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import uuid_utils
from sqlalchemy import Integer, bindparam, func, select, text, update

from odiseo.domain.events import EventType
from odiseo.domain.models import PublishedEvent
from odiseo.domain.webhooks import Attempt, Claimed, DeliveryStatus, Endpoint, Verdict, payload
from odiseo.storage.database import Database, Row, Tx, fixed
from odiseo.storage.outcomes import ABOUT, published
from odiseo.storage.tables import (
    email_events,
    emails,
    webhook_attempts,
    webhook_deliveries,
    webhook_endpoints,
)

# Literal, not bound, so PostgreSQL can use the partial index ix_webhook_deliveries_due.
PENDING = text("webhook_deliveries.status = 'pending'")


def new_webhook_id() -> str:
    """A delivery's `webhook-id`, kept for every retry and replay: time-ordered (a
    version-7 UUID) for the same reason as message ids (service.new_message_id), its
    unique index written at the end rather than at a random leaf."""
    return "msg_" + uuid_utils.uuid7().hex


def body(event: PublishedEvent) -> str:
    """The bytes a delivery of `event` sends, compact JSON."""
    return json.dumps(payload(event), separators=(",", ":"), ensure_ascii=False)


_MARKED = text("email_events.webhook_pending")  # literal: the partial index's predicate
_D = webhook_deliveries.c


class DeliveryVerbs:
    """Fan-out, claim and record; `db` comes from the store."""

    db: Database

    async def fan_out(self, *, limit: int, now: datetime) -> int:
        """Turn up to `limit` marked events into deliveries; how many events it took."""
        async with self.db.write() as tx:
            marked = await tx.rows(_MARKED_EVENTS, {"limit": limit})
            if not marked:
                return 0
            endpoints = await tx.rows(_ENABLED)
            rows = [
                delivery_row(e["id"], published(row), now=now)
                for row in marked
                if row["type"] is not None  # not a published event: nothing to send
                for e in endpoints
                if not e["events"] or row["type"] in e["events"]
            ]
            if rows:
                await tx.run(_NEW_DELIVERY, rows)
            await tx.run(_UNMARK, [{"ids": [r["id"] for r in marked]}])
        return len(marked)

    async def claim_deliveries(
        self,
        *,
        limit: int,
        per_endpoint: int,
        busy: Sequence[str] = (),
        worker: str,
        lease_seconds: float,
        now: datetime,
    ) -> list[Claimed]:
        """Lease up to `limit` due deliveries to `worker`, committed before returning."""
        # Committed before any HTTP request: no row lock is held across the network.
        async with self.db.write() as tx:
            wanted = {"limit": limit, "per_endpoint": per_endpoint, "busy": list(busy), "now": now}
            due = await tx.rows(_DUE, wanted)
            if not due:
                return []
            until = now + timedelta(seconds=lease_seconds)
            leased = {"ids": [r["id"] for r in due], "worker": worker, "until": until, "now": now}
            claimed = await tx.rows(_LEASE, leased)
            ids = list({r["endpoint_id"] for r in claimed})
            targets = await tx.rows(_ENDPOINTS, {"ids": ids})
        by_id = {t["id"]: endpoint(t, now=now) for t in targets}
        return [
            Claimed(
                id=r["id"],
                endpoint_id=r["endpoint_id"],
                url=by_id[r["endpoint_id"]].url,
                secrets=by_id[r["endpoint_id"]].secrets,
                webhook_id=r["webhook_id"],
                payload=r["payload"].encode(),
                attempt=r["attempts"],
            )
            for r in sorted(claimed, key=lambda r: r["id"])
        ]

    async def record_delivery(
        self,
        claimed: Claimed,
        *,
        attempt: Attempt,
        verdict: Verdict,
        worker: str,
        disable_after: timedelta,
        now: datetime,
    ) -> str | None:
        """Log the attempt and apply its verdict if `worker` still holds the delivery;
        note the endpoint's failures. Why the endpoint was disabled, if it now was."""
        async with self.db.write() as tx:
            await tx.run(webhook_attempts.insert(), [_attempt_row(claimed.id, attempt)])
            await tx.run(
                update(webhook_deliveries)
                .where(
                    _D.id == claimed.id,
                    _D.attempts == claimed.attempt,
                    _D.locked_by == worker,
                    PENDING,
                )
                .values(
                    status=verdict.status.value,
                    next_attempt_at=verdict.next_attempt_at,
                    locked_by=None,
                    last_status_code=attempt.status_code,
                    updated_at=now,
                )
            )
            reason = await _note_endpoint(
                tx, claimed.endpoint_id, attempt, verdict, disable_after=disable_after, now=now
            )
            if reason is not None and await disable(
                tx, claimed.endpoint_id, reason=reason, now=now
            ):
                data = {"endpoint_id": claimed.endpoint_id, "reason": reason}
                await publish(tx, EventType.WEBHOOK_DISABLED, data=data, now=now)
                return reason
        return None


def _due() -> Any:
    """Due deliveries of enabled endpoints, at most `per_endpoint` of each, oldest first,
    none of the endpoints in `busy`."""
    conditions: list[Any] = [
        PENDING,
        _D.next_attempt_at <= bindparam("now"),
        webhook_endpoints.c.enabled.is_(True),
        _D.endpoint_id.not_in(bindparam("busy", expanding=True)),
    ]
    rank = func.row_number().over(partition_by=_D.endpoint_id, order_by=(_D.next_attempt_at, _D.id))
    ranked = (
        select(_D.id, rank.label("n"))
        .join(webhook_endpoints, webhook_endpoints.c.id == _D.endpoint_id)
        .where(*conditions)
        .subquery()
    )
    per_endpoint = bindparam("per_endpoint", type_=Integer)
    return (
        select(_D.id)
        .where(_D.id.in_(select(ranked.c.id).where(ranked.c.n <= per_endpoint)), PENDING)
        .order_by(_D.next_attempt_at, _D.id)
        .limit(bindparam("limit", type_=Integer))
        .with_for_update(skip_locked=True)
    )


# The statements of every webhook round, built and (on PostgreSQL) compiled once.
_MARKED_EVENTS = fixed(
    select(email_events, *ABOUT)
    .select_from(email_events.outerjoin(emails, emails.c.id == email_events.c.email_id))
    .where(_MARKED)
    .order_by(email_events.c.id)
    .limit(bindparam("limit", type_=Integer))
    .with_for_update(of=email_events, skip_locked=True)
)
_ENABLED = fixed(
    select(webhook_endpoints.c.id, webhook_endpoints.c.events).where(
        webhook_endpoints.c.enabled.is_(True)
    )
)
_NEW_DELIVERY = fixed(webhook_deliveries.insert())
_UNMARK = fixed(
    update(email_events)
    .where(email_events.c.id.in_(bindparam("ids", expanding=True)))
    .values(webhook_pending=False)
)
_DUE = fixed(_due())
_LEASE = fixed(
    update(webhook_deliveries)
    .where(_D.id.in_(bindparam("ids", expanding=True)))
    .values(
        attempts=_D.attempts + 1,
        locked_by=bindparam("worker"),
        next_attempt_at=bindparam("until"),
        updated_at=bindparam("now"),
    )
    .returning(_D.id, _D.endpoint_id, _D.webhook_id, _D.payload, _D.attempts)
)
_ENDPOINTS = fixed(
    select(webhook_endpoints).where(webhook_endpoints.c.id.in_(bindparam("ids", expanding=True)))
)


async def _note_endpoint(
    tx: Tx,
    endpoint_id: str,
    attempt: Attempt,
    verdict: Verdict,
    *,
    disable_after: timedelta,
    now: datetime,
) -> str | None:
    """Keep when the endpoint began failing (forgotten at a success); why it must be
    disabled now, if it must: a 410, or failures for longer than `disable_after`."""
    ep = webhook_endpoints.c
    if verdict.status is DeliveryStatus.SUCCEEDED:
        await tx.run(
            update(webhook_endpoints).where(ep.id == endpoint_id).values(failing_since=None)
        )
        return None
    since: datetime | None = await tx.scalar(
        update(webhook_endpoints)
        .where(ep.id == endpoint_id)
        .values(failing_since=func.coalesce(ep.failing_since, now))
        .returning(ep.failing_since)
    )
    if verdict.gone:
        return "the receiver answered 410 Gone"
    if since is not None and now - since > disable_after:
        return f"failing since {since.isoformat()}"
    return None


def _attempt_row(delivery_id: int, attempt: Attempt) -> dict[str, Any]:
    return {
        "delivery_id": delivery_id,
        "at": attempt.at,
        "status_code": attempt.status_code,
        "duration_ms": attempt.duration_ms,
        "response": attempt.response,
        "error": attempt.error,
    }


async def publish(
    tx: Tx, event_type: EventType, *, data: dict[str, Any], now: datetime, fan_out: bool = True
) -> int:
    """Insert a system event; its id."""
    event_id: int = await tx.scalar(
        email_events.insert()
        .values(
            email_id=None,
            at=now,
            kind=event_type.value,
            type=event_type.value,
            data=data,
            webhook_pending=fan_out,
        )
        .returning(email_events.c.id)
    )
    return event_id


async def disable(tx: Tx, endpoint_id: str, *, reason: str, now: datetime) -> bool:
    """Disable an enabled endpoint and end its pending deliveries; False if it was not
    enabled (so each disabling is done, and announced, once)."""
    changed = await tx.scalar(
        update(webhook_endpoints)
        .where(webhook_endpoints.c.id == endpoint_id, webhook_endpoints.c.enabled.is_(True))
        .values(enabled=False, disabled_reason=reason, updated_at=now)
        .returning(webhook_endpoints.c.id)
    )
    if changed is None:
        return False
    await tx.run(
        update(webhook_deliveries)
        .where(webhook_deliveries.c.endpoint_id == endpoint_id, PENDING)
        .values(
            status=DeliveryStatus.FAILED.value, next_attempt_at=None, locked_by=None, updated_at=now
        )
    )
    return True


def delivery_row(endpoint_id: str, event: PublishedEvent, *, now: datetime) -> dict[str, Any]:
    """A new delivery of `event` to an endpoint, due now."""
    assert event.event.type is not None
    return {
        "endpoint_id": endpoint_id,
        "event_id": event.event.id,
        "event_type": event.event.type,
        "webhook_id": new_webhook_id(),
        "payload": body(event),
        "status": DeliveryStatus.PENDING.value,
        "attempts": 0,
        "next_attempt_at": now,
        "created_at": now,
        "updated_at": now,
    }


def endpoint(row: Row, *, now: datetime | None = None) -> Endpoint:
    """An endpoint from its row; with `now`, its signing secrets (the previous one while
    its overlap lasts)."""
    secrets: tuple[str, ...] = ()
    if now is not None:
        secrets = (row["secret"],)
        expires = row["previous_expires_at"]
        if row["previous_secret"] and expires is not None and expires > now:
            secrets += (row["previous_secret"],)
    return Endpoint(
        id=row["id"],
        url=row["url"],
        description=row["description"],
        events=tuple(row["events"]),
        enabled=row["enabled"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        failing_since=row.get("failing_since"),
        disabled_reason=row.get("disabled_reason"),
        secrets=secrets,
    )
