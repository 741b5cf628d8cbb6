"""Webhook endpoints, their delivery log and replays, and system events, in SQLAlchemy
Core for both engines (the fan-out and the delivery verbs are in deliveries.py).

A disabled endpoint (by an operator, a 410, or days of failures) gets no new
deliveries and its pending ones end `failed`: `pending` always means "will be tried".
Replays put a finished delivery back to `pending`, due now, with its `webhook-id` and
bytes unchanged, so a receiver that did get it can tell.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update

from odiseo.domain.events import EventType
from odiseo.domain.models import Event, PublishedEvent
from odiseo.domain.webhooks import Attempt, Delivery, DeliveryStatus, Endpoint
from odiseo.errors import InvalidTransition, NotFound
from odiseo.storage.database import Database, Row, Tx
from odiseo.storage.deliveries import DeliveryVerbs, delivery_row, disable, endpoint, publish
from odiseo.storage.tables import (
    webhook_attempts,
    webhook_deliveries,
    webhook_endpoints,
)

_EDITABLE = frozenset({"url", "description", "events", "enabled"})


class WebhookStore(DeliveryVerbs):
    """Endpoints, deliveries and their attempts; see the module docstring."""

    def __init__(self, db: Database) -> None:
        self.db = db

    # -- endpoints ---------------------------------------------------------------------

    async def create(
        self,
        endpoint_id: str,
        *,
        url: str,
        description: str | None,
        events: Sequence[str],
        secret: str,
        now: datetime,
    ) -> Endpoint:
        row = {
            "id": endpoint_id,
            "url": url,
            "description": description,
            "events": list(events),
            "enabled": True,
            "secret": secret,
            "created_at": now,
            "updated_at": now,
        }
        async with self.db.write() as tx:
            await tx.run(webhook_endpoints.insert(), [row])
        return endpoint(row)

    async def get(self, endpoint_id: str) -> Endpoint | None:
        async with self.db.read() as tx:
            row = await tx.first(
                select(webhook_endpoints).where(webhook_endpoints.c.id == endpoint_id)
            )
        return None if row is None else endpoint(row)

    async def endpoints(self) -> list[Endpoint]:
        async with self.db.read() as tx:
            rows = await tx.rows(select(webhook_endpoints).order_by(webhook_endpoints.c.created_at))
        return [endpoint(row) for row in rows]

    async def update(self, endpoint_id: str, *, changes: dict[str, Any], now: datetime) -> Endpoint:
        """Change url, description, events or enabled; enabling forgets past failures,
        disabling ends the pending deliveries. Raises NotFound."""
        values = {k: (list(v) if k == "events" else v) for k, v in changes.items()}
        assert set(values) <= _EDITABLE, values
        if values.get("enabled"):
            values |= {"failing_since": None, "disabled_reason": None}
        async with self.db.write() as tx:
            if values.get("enabled") is False:
                values.pop("enabled")
                await disable(tx, endpoint_id, reason="disabled by an operator", now=now)
            found = await tx.first(
                update(webhook_endpoints)
                .where(webhook_endpoints.c.id == endpoint_id)
                .values(**values, updated_at=now)
                .returning(*webhook_endpoints.c)
            )
        if found is None:
            raise NotFound(f"no webhook endpoint {endpoint_id!r}")
        return endpoint(found)

    async def delete(self, endpoint_id: str) -> bool:
        """Remove the endpoint with its deliveries and their attempts."""
        async with self.db.write() as tx:
            doomed = select(webhook_deliveries.c.id).where(
                webhook_deliveries.c.endpoint_id == endpoint_id
            )
            await tx.run(
                webhook_attempts.delete().where(webhook_attempts.c.delivery_id.in_(doomed))
            )
            await tx.run(
                webhook_deliveries.delete().where(webhook_deliveries.c.endpoint_id == endpoint_id)
            )
            gone = await tx.run(
                webhook_endpoints.delete().where(webhook_endpoints.c.id == endpoint_id)
            )
        return gone > 0

    async def rotate(
        self, endpoint_id: str, *, secret: str, overlap: timedelta, now: datetime
    ) -> Endpoint:
        """Sign with `secret` from now on, and with the current one until `overlap` ends."""
        async with self.db.write() as tx:
            found = await tx.first(
                update(webhook_endpoints)
                .where(webhook_endpoints.c.id == endpoint_id)
                .values(
                    previous_secret=webhook_endpoints.c.secret,
                    previous_expires_at=now + overlap,
                    secret=secret,
                    updated_at=now,
                )
                .returning(*webhook_endpoints.c)
            )
        if found is None:
            raise NotFound(f"no webhook endpoint {endpoint_id!r}")
        return endpoint(found)

    # -- events --------------------------------------------------------------------------

    async def send_test(self, endpoint_id: str, *, now: datetime) -> Delivery:
        """A `webhook.test` event (in GET /events, not fanned out) and its one delivery, to
        this endpoint, due now. Raises NotFound."""
        async with self.db.write() as tx:
            found = await tx.first(
                select(webhook_endpoints.c.id).where(webhook_endpoints.c.id == endpoint_id)
            )
            if found is None:
                raise NotFound(f"no webhook endpoint {endpoint_id!r}")
            data = {"endpoint_id": endpoint_id}
            event_id = await publish(tx, EventType.WEBHOOK_TEST, data=data, now=now, fan_out=False)
            kind = EventType.WEBHOOK_TEST.value
            event = Event(id=event_id, at=now, kind=kind, type=kind, data=data)
            row = delivery_row(endpoint_id, PublishedEvent(event=event), now=now)
            row["id"] = await tx.scalar(
                webhook_deliveries.insert().values(row).returning(webhook_deliveries.c.id)
            )
        return delivery(row)

    # -- the delivery log and replays -------------------------------------------------

    async def deliveries(
        self, endpoint_id: str, *, limit: int, before: int | None
    ) -> tuple[list[Delivery], int | None]:
        """The endpoint's deliveries, newest first, below the id `before`, each with its
        attempts; and the id to continue below (None on the last page)."""
        conditions = [webhook_deliveries.c.endpoint_id == endpoint_id]
        if before is not None:
            conditions.append(webhook_deliveries.c.id < before)
        async with self.db.read() as tx:
            rows = await tx.rows(
                select(webhook_deliveries)
                .where(*conditions)
                .order_by(webhook_deliveries.c.id.desc())
                .limit(limit + 1)
            )
            page = rows[:limit]
            history = await attempts(tx, [r["id"] for r in page])
        found = [delivery(r, history.get(r["id"], ())) for r in page]
        return found, (found[-1].id if len(rows) > limit else None)

    async def replay(self, endpoint_id: str, delivery_id: int, *, now: datetime) -> Delivery:
        """Send a finished delivery again (same webhook-id, same bytes), due now.
        Raises NotFound, or InvalidTransition while it is still pending."""
        async with self.db.write() as tx:
            mine = (
                webhook_deliveries.c.id == delivery_id,
                webhook_deliveries.c.endpoint_id == endpoint_id,
            )
            current = await tx.scalar(select(webhook_deliveries.c.status).where(*mine))
            if current is None:
                raise NotFound(f"no delivery {delivery_id} of webhook endpoint {endpoint_id!r}")
            if current == DeliveryStatus.PENDING:
                raise InvalidTransition("the delivery is pending: it will be tried anyway")
            row = await tx.first(
                update(webhook_deliveries)
                .where(*mine)
                .values(**_again(now))
                .returning(*webhook_deliveries.c)
            )
        assert row is not None
        return delivery(row)

    async def replay_failed(self, endpoint_id: str, *, since: datetime, now: datetime) -> int:
        """Send again every failed delivery of the endpoint created at or after `since`."""
        async with self.db.write() as tx:
            return await tx.run(
                update(webhook_deliveries)
                .where(
                    webhook_deliveries.c.endpoint_id == endpoint_id,
                    webhook_deliveries.c.status == DeliveryStatus.FAILED,
                    webhook_deliveries.c.created_at >= since,
                )
                .values(**_again(now))
            )

    async def oldest_pending_seconds(self, *, now: datetime) -> float:
        """How long ago the oldest delivery still pending was created (0 when none is)."""
        async with self.db.read() as tx:
            oldest: datetime | None = await tx.scalar(
                select(func.min(webhook_deliveries.c.created_at)).where(
                    webhook_deliveries.c.status == DeliveryStatus.PENDING
                )
            )
        return 0.0 if oldest is None else max(0.0, (now - oldest).total_seconds())


def _again(now: datetime) -> dict[str, Any]:
    """A delivery's columns when it is to be tried again from the start of the schedule."""
    return {
        "status": DeliveryStatus.PENDING.value,
        "attempts": 0,
        "next_attempt_at": now,
        "locked_by": None,
        "updated_at": now,
    }


async def attempts(tx: Tx, delivery_ids: Sequence[int]) -> dict[int, tuple[Attempt, ...]]:
    if not delivery_ids:
        return {}
    rows = await tx.rows(
        select(webhook_attempts)
        .where(webhook_attempts.c.delivery_id.in_(list(delivery_ids)))
        .order_by(webhook_attempts.c.id)
    )
    found: dict[int, list[Attempt]] = {}
    for r in rows:
        found.setdefault(r["delivery_id"], []).append(
            Attempt(
                at=r["at"],
                duration_ms=r["duration_ms"],
                status_code=r["status_code"],
                response=r["response"],
                error=r["error"],
            )
        )
    return {key: tuple(value) for key, value in found.items()}


def delivery(row: Row, history: tuple[Attempt, ...] = ()) -> Delivery:
    return Delivery(
        id=row["id"],
        endpoint_id=row["endpoint_id"],
        webhook_id=row["webhook_id"],
        event_id=row["event_id"],
        event_type=row["event_type"],
        status=DeliveryStatus(row["status"]),
        attempts=row["attempts"],
        next_attempt_at=row["next_attempt_at"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        last_status_code=row.get("last_status_code"),
        history=history,
    )
