"""What the service and the worker see of the store: this Protocol, nothing else.

Two engines implement it (`sqlite.SqliteStore`, `postgres.PostgresStore`); which one
runs is chosen by `engines.open_store`, called only by the API and the CLI. Every time
is passed in (`now`), UTC-aware, so tests control the clock.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from odiseo.domain.bounces import Returned
from odiseo.domain.events import EventType
from odiseo.domain.limits import Grant, RateLimit
from odiseo.domain.models import (
    AttemptResult,
    AuditEntry,
    EmailFilter,
    EnqueueSettings,
    Erased,
    EventFilter,
    NewEmail,
    PublishedEvent,
    QueuedEmail,
    Status,
    StoredTemplate,
    Suppression,
    SuppressionReason,
)
from odiseo.domain.operations import ActivityCount, RecentFailure, UiSession, WorkerSeen
from odiseo.domain.throttle import Policy, Signal, Throttle
from odiseo.domain.webhooks import Attempt, Claimed, Delivery, Endpoint, Verdict


@dataclass(frozen=True, kw_only=True)
class Enqueued:
    """The outcome of storing one message: created now, or found under its client id."""

    message_id: str
    created: bool
    same_payload: bool = True
    suppressed: tuple[str, ...] = ()  # recipients on the suppression list: they are skipped


@dataclass(frozen=True, kw_only=True)
class Gauges:
    """What /metrics reads of the database at a scrape: one statement, one snapshot."""

    counts: dict[Status, int]  # every status, zeros included
    oldest_due_seconds: float  # how long the longest-waiting due message has been due
    webhook_oldest_pending_seconds: float  # the oldest delivery still pending, by creation
    throttled: tuple[tuple[str, str], ...]  # (scope, domain) of each scope slowed now


class Templates(Protocol):
    async def put(
        self,
        template_id: str,
        *,
        subject: str | None,
        html: str,
        text: str | None,
        sample_variables: dict[str, Any] | None = None,
        now: datetime,
    ) -> StoredTemplate: ...

    async def get(self, template_id: str, version: int | None = None) -> StoredTemplate | None: ...

    async def list(self) -> list[StoredTemplate]: ...

    async def delete(self, template_id: str) -> bool: ...


class Webhooks(Protocol):
    """Webhook endpoints and deliveries (storage/webhooks.py, storage/deliveries.py)."""

    async def create(
        self,
        endpoint_id: str,
        *,
        url: str,
        description: str | None,
        events: Sequence[str],
        secret: str,
        now: datetime,
    ) -> Endpoint: ...

    async def get(self, endpoint_id: str) -> Endpoint | None: ...

    async def endpoints(self) -> list[Endpoint]: ...

    async def update(
        self, endpoint_id: str, *, changes: dict[str, Any], now: datetime
    ) -> Endpoint: ...

    async def delete(self, endpoint_id: str) -> bool: ...

    async def rotate(
        self, endpoint_id: str, *, secret: str, overlap: timedelta, now: datetime
    ) -> Endpoint: ...

    async def send_test(self, endpoint_id: str, *, now: datetime) -> Delivery: ...

    async def deliveries(
        self, endpoint_id: str, *, limit: int, before: int | None
    ) -> tuple[list[Delivery], int | None]: ...

    async def replay(self, endpoint_id: str, delivery_id: int, *, now: datetime) -> Delivery: ...

    async def replay_failed(self, endpoint_id: str, *, since: datetime, now: datetime) -> int: ...

    async def oldest_pending_seconds(self, *, now: datetime) -> float: ...

    async def fan_out(self, *, limit: int, now: datetime) -> int: ...

    async def claim_deliveries(
        self,
        *,
        limit: int,
        per_endpoint: int,
        busy: Sequence[str] = (),
        worker: str,
        lease_seconds: float,
        now: datetime,
    ) -> list[Claimed]: ...

    async def record_delivery(
        self,
        claimed: Claimed,
        *,
        attempt: Attempt,
        verdict: Verdict,
        worker: str,
        disable_after: timedelta,
        now: datetime,
    ) -> str | None: ...


class Outcomes(Protocol):
    """Published events and the suppression list (storage/outcomes.py)."""

    async def events(
        self, query: EventFilter, *, limit: int, before: int | None
    ) -> tuple[list[PublishedEvent], int | None]: ...

    async def publish(self, type_: EventType, *, data: dict[str, Any], now: datetime) -> int: ...

    async def suppressed(self, addresses: Sequence[str]) -> set[str]: ...

    async def suppression(self, address: str) -> Suppression | None: ...

    async def suppressions(
        self,
        *,
        search: str | None = None,
        reason: SuppressionReason | None = None,
        limit: int,
        after: str | None = None,
    ) -> tuple[list[Suppression], str | None]: ...

    async def suppress(self, entry: Suppression) -> Suppression: ...

    async def unsuppress(self, address: str) -> bool: ...

    async def unsubscribe(self, *, address: str, message_id: str, now: datetime) -> None: ...

    async def record_returned(self, returned: Returned, *, now: datetime) -> str | None: ...

    async def keep_unparsed(
        self, *, data: dict[str, Any], message_id: str | None, now: datetime
    ) -> int: ...


class Operations(Protocol):
    """The dashboard's sign-ins, the workers' heartbeats, recent activity
    (storage/operations.py)."""

    async def open_session(self, session: UiSession, *, now: datetime) -> None: ...

    async def session(self, session_id: str, *, now: datetime) -> UiSession | None: ...

    async def close_session(self, session_id: str) -> None: ...

    async def worker_seen(self, worker: WorkerSeen) -> None: ...

    async def workers(self) -> list[WorkerSeen]: ...

    async def activity(
        self,
        types: Sequence[EventType],
        *,
        since: datetime,
        until: datetime | None = None,
        span_seconds: int,
    ) -> list[ActivityCount]: ...

    async def failures(self, *, since: datetime, limit: int) -> list[RecentFailure]: ...


class Retention(Protocol):
    """Purging, erasure and the audit log (storage/retention.py)."""

    async def purge(self, *, before: datetime, limit: int) -> int: ...

    async def purgeable(self, *, before: datetime) -> int: ...

    async def erase(self, address: str) -> Erased: ...

    async def audit(
        self, *, at: datetime, actor: str, action: str, target: str, status_code: int
    ) -> None: ...

    async def audit_entries(
        self, *, limit: int, before: int | None
    ) -> tuple[list[AuditEntry], int | None]: ...


class Limits(Protocol):
    """Sending limits shared by every worker (storage/limits.py)."""

    async def take(self, limits: Sequence[RateLimit], *, want: int, now: datetime) -> Grant: ...

    async def give_back(self, grant: Grant, count: int) -> None: ...

    async def exhausted(self, limits: Sequence[RateLimit], *, now: datetime) -> list[str]: ...

    async def usage(self, limits: Sequence[RateLimit], *, now: datetime) -> dict[str, int]: ...

    async def throttles(self, *, now: datetime) -> list[Throttle]: ...

    async def throttled(
        self, signal: Signal, *, now: datetime, policy: Policy
    ) -> tuple[Throttle, bool]: ...


class Store(Protocol):
    """The durable queue."""

    @property
    def templates(self) -> Templates: ...

    @property
    def outcomes(self) -> Outcomes: ...

    @property
    def retention(self) -> Retention: ...

    @property
    def limits(self) -> Limits: ...

    @property
    def webhooks(self) -> Webhooks: ...

    @property
    def operations(self) -> Operations: ...

    # -- life ------------------------------------------------------------------------
    async def migrate(self, *, contract: bool = False) -> list[str]:
        """Create or upgrade the schema; safe to call from several processes at once.

        An existing database stops before its first contract revision unless `contract`
        (storage/migrate.py); returns the contract revisions still pending.
        """

    async def ping(self) -> None:
        """Raise StoreUnavailable unless the database answers."""

    async def publish_enqueue_settings(self, settings: EnqueueSettings, *, now: datetime) -> None:
        """Write the rules the SQL function enqueue() applies (one row, replaced)."""

    async def close(self) -> None: ...

    # -- the hot verbs: one implementation per engine ------------------------------------
    async def enqueue(self, items: Sequence[NewEmail], *, now: datetime) -> list[Enqueued]:
        """Store messages in one transaction; a client_message_id already stored in the
        item's scope creates nothing (its Enqueued says where it is)."""

    async def claim_due(
        self,
        *,
        limit: int,
        worker: str,
        lease_seconds: float,
        now: datetime,
        skip_domains: Sequence[str] = (),
    ) -> list[QueuedEmail]:
        """Claim up to `limit` due messages for `worker`, committed before returning;
        none with a recipient at a domain of `skip_domains` (held back by its limit)."""

    async def heartbeat(
        self, ids: Sequence[int], *, worker: str, lease_seconds: float, now: datetime
    ) -> int:
        """Renew the leases of the messages `ids` that `worker` holds; how many it holds.
        Only those it knows of: see release_strays."""

    async def record_results(
        self,
        results: Sequence[AttemptResult],
        *,
        worker: str,
        now: datetime,
        redact: bool = False,
    ) -> int:
        """Record finished attempts in one transaction, each outcome logged once however
        often this is retried; how many rows `worker` still held. With `redact`
        (REDACT_AFTER_SEND), a sent message's bodies and attachments are dropped."""

    async def release(self, ids: Sequence[int], *, worker: str, now: datetime) -> int:
        """Hand back claimed messages that were never attempted."""

    async def release_strays(self, holding: Sequence[int], *, worker: str, now: datetime) -> int:
        """Hand back every message leased to `worker` but those it is `holding`: a claim
        can commit and its answer never arrive (the connection dropped, the database
        crashed), leasing messages the worker never saw; how many there were."""

    async def wait_for_work(self, timeout: float) -> None:
        """Sleep up to `timeout` seconds, returning early when new mail may be due."""

    # -- the rarely called verbs: written once for both ---------------------------------
    async def get(self, message_id: str) -> QueuedEmail | None: ...

    async def search(
        self, query: EmailFilter, *, limit: int, before: int | None, scan: int | None = None
    ) -> tuple[list[QueuedEmail], int | None]: ...

    async def counts(self) -> dict[Status, int]: ...

    async def oldest_due_seconds(self, *, now: datetime) -> float: ...

    async def gauges(self, *, now: datetime) -> Gauges: ...

    async def cancel(self, message_id: str, *, now: datetime) -> None: ...

    async def reschedule(self, message_id: str, *, send_at: datetime, now: datetime) -> None: ...

    async def requeue(self, message_id: str, *, now: datetime) -> None: ...

    async def requeue_failed(
        self, *, now: datetime, created_after: datetime | None = None
    ) -> int: ...

    async def count_request(self, key: str, *, window: int) -> int: ...
