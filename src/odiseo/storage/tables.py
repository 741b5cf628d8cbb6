"""The schema, as SQLAlchemy Core tables: the single source of truth.

Migrations are written from these and a test checks they match. Times are
stored in UTC; on SQLite as naive UTC, read back as aware UTC.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    text,
)
from sqlalchemy.types import TypeDecorator

from odiseo.domain.lifecycle import CLAIMABLE, sql_in
from odiseo.domain.models import Outcome

metadata = MetaData()

Id = BigInteger().with_variant(Integer(), "sqlite")


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp that is always aware UTC in Python, whatever the engine keeps."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; pass UTC-aware times")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, str):  # pragma: no cover - defensive, SQLite returns datetimes
            value = datetime.fromisoformat(value)
        moment: datetime = value
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


# Rows a claim may take: waiting ones, and processing ones whose lease (kept in
# next_attempt_at as well as locked_until) may run out. Literal, not bound, so
# PostgreSQL can match the partial index.
CLAIMABLE_SQL = sql_in(CLAIMABLE)
OUTCOME_KINDS_SQL = "kind IN (" + ", ".join(f"'{o.value}'" for o in Outcome) + ")"

FOREIGN_RFC_MESSAGE_ID = "substr(rfc_message_id, 2, 36) <> message_id"

CLIENT_KEY = ["idempotency_scope", "client_message_id"]  # the columns of ux_emails_client_key

emails = Table(
    "emails",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("message_id", String(36), nullable=False, unique=True),
    Column("rfc_message_id", String(255), nullable=False),
    Column("client_message_id", String(255), nullable=True),
    Column("idempotency_scope", String(64), nullable=False, server_default=text("''")),
    Column("payload_hash", String(64), nullable=True),
    Column("status", String(16), nullable=False),
    Column("priority", Integer, nullable=False),
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    Column("max_retries", Integer, nullable=False),
    Column("next_attempt_at", UTCDateTime, nullable=True),
    Column("locked_until", UTCDateTime, nullable=True),
    Column("locked_by", String(255), nullable=True),
    Column("from_email", String(320), nullable=False),
    Column("from_name", String(255), nullable=True),
    Column("to_addrs", JSON, nullable=False),
    Column("cc_addrs", JSON, nullable=False),
    Column("bcc_addrs", JSON, nullable=False),
    Column("reply_to", JSON, nullable=False),
    Column("headers", JSON, nullable=False),
    Column("list_unsubscribe", Text, nullable=True),
    Column("subject", Text, nullable=False),
    Column("html", Text, nullable=True),
    Column("text", Text, nullable=True),
    Column("template_id", String(128), nullable=True),
    Column("template_version", Integer, nullable=True),
    Column("expires_at", UTCDateTime, nullable=True),
    Column("attachment_count", Integer, nullable=False, server_default=text("0")),
    Column("raw_message", LargeBinary, nullable=True),  # as submitted over SMTP, sent as is
    Column("tags", JSON, nullable=False),
    Column("meta", JSON, nullable=False),
    Column("last_error", Text, nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("sent_at", UTCDateTime, nullable=True),
    Column("redacted_at", UTCDateTime, nullable=True),  # bodies and files dropped then
    # The id the relay gave the message in its reply to DATA (hosted relays' bounce
    # webhooks name it), recorded with the email.sent outcome.
    Column("relay_message_id", String(255), nullable=True),
    # Claimable rows only: the claim index stays small however long the history grows.
    Index(
        "ix_emails_due",
        "priority",
        "next_attempt_at",
        "id",
        postgresql_where=text(CLAIMABLE_SQL),
        sqlite_where=text(CLAIMABLE_SQL),
    ),
    Index("ix_emails_status", "status"),
    Index(
        "ix_emails_relay_message_id",
        "relay_message_id",
        postgresql_where=text("relay_message_id IS NOT NULL"),
        sqlite_where=text("relay_message_id IS NOT NULL"),
    ),
    # A Message-ID that is not our own <message_id@domain> (one an application set):
    # ours are found by message_id, so only the others need this index.
    Index(
        "ix_emails_foreign_rfc_message_id",
        "rfc_message_id",
        postgresql_where=text(FOREIGN_RFC_MESSAGE_ID),
        sqlite_where=text(FOREIGN_RFC_MESSAGE_ID),
    ),
    # A client_message_id is unique per API key (its scope), never across keys.
    Index("ux_emails_client_key", "idempotency_scope", "client_message_id", unique=True),
)

# The columns an enqueue writes (rows.to_row gives exactly these; a test holds them
# together): all but those the claim and the record fill in later.
WRITTEN_LATER = frozenset(
    {"id", "locked_until", "locked_by", "last_error", "sent_at", "relay_message_id", "redacted_at"}
)
INSERT_COLUMNS = tuple(c.name for c in emails.c if c.name not in WRITTEN_LATER)

# A message's history. Rows with a `type` (domain/events.py) are published events:
# GET /events lists them, and webhook_pending marks those the webhook dispatcher has
# not fanned out yet. System events (webhook.*, *.throttled) have no email_id.
email_events = Table(
    "email_events",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("email_id", Id, ForeignKey("emails.id", ondelete="CASCADE"), nullable=True),
    Column("at", UTCDateTime, nullable=False),
    Column("kind", String(32), nullable=False),
    Column("type", String(32), nullable=True),
    Column("recipient", String(320), nullable=True),
    Column("data", JSON(none_as_null=True), nullable=True),
    Column("webhook_pending", Boolean, nullable=False, server_default=text("false")),
    Column("attempt", Integer, nullable=True),
    Column("smtp_code", Integer, nullable=True),
    Column("response", Text, nullable=True),
    Column("duration_ms", Integer, nullable=True),
    Column("worker", String(255), nullable=True),
    Index("ix_email_events_email_id", "email_id"),
    Index(
        "ix_email_events_type",
        "type",
        "id",
        postgresql_where=text("type IS NOT NULL"),
        sqlite_where=text("type IS NOT NULL"),
    ),
    # The dashboard's activity charts and failure lists: typed events of a recent span.
    Index(
        "ix_email_events_type_at",
        "type",
        "at",
        postgresql_where=text("type IS NOT NULL"),
        sqlite_where=text("type IS NOT NULL"),
    ),
    Index(
        "ix_email_events_recipient",
        "recipient",
        "id",
        postgresql_where=text("recipient IS NOT NULL"),
        sqlite_where=text("recipient IS NOT NULL"),
    ),
    Index(
        "ix_email_events_webhook_pending",
        "id",
        postgresql_where=text("webhook_pending"),
        sqlite_where=text("webhook_pending"),
    ),
    # An attempt's outcome is logged once, however often its write is retried.
    Index(
        "ux_email_events_outcome",
        "email_id",
        "attempt",
        "at",
        unique=True,
        postgresql_where=text(OUTCOME_KINDS_SQL),
        sqlite_where=text(OUTCOME_KINDS_SQL),
    ),
)

# Addresses Odiseo no longer sends to (lower-cased), why, and what caused it.
suppressions = Table(
    "suppressions",
    metadata,
    Column("address", String(320), primary_key=True),
    Column("reason", String(16), nullable=False),
    Column("message_id", String(36), nullable=True),
    Column("detail", Text, nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
)

# How many messages are in each status, kept by triggers (migration 0011): one row per
# status and shard; counts() sums them. Never written by the store's own code.
status_counts = Table(
    "status_counts",
    metadata,
    Column("status", String(16), primary_key=True),
    Column("shard", Integer, primary_key=True, autoincrement=False),
    Column("n", BigInteger, nullable=False),
)

# Every change an admin key made through the API: who (the key's label), what, when.
audit_log = Table(
    "audit_log",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("at", UTCDateTime, nullable=False),
    Column("actor", String(64), nullable=False),
    Column("action", String(255), nullable=False),
    Column("target", Text, nullable=False),
    Column("status_code", Integer, nullable=False),
)

# What the SQL function enqueue() (storage/enqueue_function.py) needs of the service's
# settings, written by `odiseo migrate` and at every start (one row, id 1), so that the
# database and the service apply the same sender and size rules.
enqueue_settings = Table(
    "enqueue_settings",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("from_email", String(320), nullable=False),  # SMTP_FROM_EMAIL
    Column("from_name", String(255), nullable=True),  # SMTP_FROM_NAME
    Column("allowed_senders", JSON, nullable=False),  # ALLOWED_SENDERS: a@b and @domain
    Column("message_id_domain", String(255), nullable=False),  # of each Message-ID
    Column("max_message_bytes", BigInteger, nullable=False),  # MAX_MESSAGE_BYTES
    Column("max_retries", Integer, nullable=False),  # EMAIL_RETRY_MAX_ATTEMPTS
    Column("updated_at", UTCDateTime, nullable=False),
)

# Sending limits shared by every worker (storage/limits.py): per limit, the current
# window's start (epoch seconds) and how many messages it has taken.
send_usage = Table(
    "send_usage",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("window_start", BigInteger, nullable=False),
    Column("used", Integer, nullable=False),
)

# Adaptive throttling (domain/throttle.py): one row per scope that a reply asked to slow
# down, the relay's with domain "", shared by every worker like send_usage.
throttles = Table(
    "throttles",
    metadata,
    Column("scope", String(16), primary_key=True),
    Column("domain", String(255), primary_key=True),
    Column("until", UTCDateTime, nullable=False),
    Column("recovered_at", UTCDateTime, nullable=False),
    Column("onsets", Integer, nullable=False),
    Column("reply", Text, nullable=False),
)

# Requests per API key per minute, shared by every API process (RATE_LIMIT_PER_MINUTE).
rate_limits = Table(
    "rate_limits",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("window", BigInteger, primary_key=True, autoincrement=False),
    Column("hits", Integer, nullable=False),
)

email_attachments = Table(
    "email_attachments",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("email_id", Id, ForeignKey("emails.id", ondelete="CASCADE"), nullable=False),
    Column("position", Integer, nullable=False),
    Column("filename", String(255), nullable=False),
    Column("content_type", String(255), nullable=False),
    Column("content_id", String(255), nullable=True),
    Column("data", LargeBinary, nullable=False),
    Index("ix_email_attachments_email_id", "email_id"),
)

# Stored templates: the current version, and every version ever saved (sends record theirs).
templates = Table(
    "templates",
    metadata,
    Column("id", String(128), primary_key=True),
    Column("version", Integer, nullable=False),
    Column("subject", Text, nullable=True),
    Column("html", Text, nullable=False),
    Column("text", Text, nullable=True),
    Column("sample_variables", JSON(none_as_null=True), nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)

template_versions = Table(
    "template_versions",
    metadata,
    Column("template_id", String(128), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("subject", Text, nullable=True),
    Column("html", Text, nullable=False),
    Column("text", Text, nullable=True),
    Column("sample_variables", JSON(none_as_null=True), nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
)

# Webhook endpoints (odiseo/webhooks/): where events are POSTed, signed with `secret`
# (and `previous_secret` until `previous_expires_at`, after a rotation).
webhook_endpoints = Table(
    "webhook_endpoints",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("url", Text, nullable=False),
    Column("description", Text, nullable=True),
    Column("events", JSON, nullable=False),  # event types it receives; [] means all
    Column("enabled", Boolean, nullable=False),
    Column("secret", String(128), nullable=False),
    Column("previous_secret", String(128), nullable=True),
    Column("previous_expires_at", UTCDateTime, nullable=True),
    Column("failing_since", UTCDateTime, nullable=True),  # first failure since a success
    Column("disabled_reason", Text, nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)

# One event for one endpoint. Claimed like emails: a claim moves next_attempt_at to the
# lease end, so a delivery whose worker died is simply due again.
webhook_deliveries = Table(
    "webhook_deliveries",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column(
        "endpoint_id",
        String(40),
        ForeignKey("webhook_endpoints.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("event_id", Id, ForeignKey("email_events.id", ondelete="CASCADE"), nullable=False),
    Column("event_type", String(32), nullable=False),
    Column("webhook_id", String(40), nullable=False, unique=True),
    Column("payload", Text, nullable=False),  # the exact body every attempt sends
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at", UTCDateTime, nullable=True),
    Column("locked_by", String(255), nullable=True),
    Column("last_status_code", Integer, nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Index(
        "ix_webhook_deliveries_due",
        "next_attempt_at",
        "id",
        postgresql_where=text("status = 'pending'"),
        sqlite_where=text("status = 'pending'"),
    ),
    Index("ix_webhook_deliveries_endpoint", "endpoint_id", "id"),
)

# Each POST of a delivery: when, how long, what came back (an excerpt) or what failed.
webhook_attempts = Table(
    "webhook_attempts",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column(
        "delivery_id",
        Id,
        ForeignKey("webhook_deliveries.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("at", UTCDateTime, nullable=False),
    Column("status_code", Integer, nullable=True),
    Column("duration_ms", Integer, nullable=False),
    Column("response", Text, nullable=True),
    Column("error", Text, nullable=True),
    Index("ix_webhook_attempts_delivery", "delivery_id", "id"),
)

# Dashboard sign-ins (odiseo/dashboard/). The cookie holds a random token; only its
# SHA-256 is kept here. `key_id` names the API key signed in with (ApiKey.scope_id: 96
# bits of its digest, never the key), NULL when no keys are configured; the key's scopes
# are looked up again on every request, so a key removed from API_KEYS ends its sessions.
ui_sessions = Table(
    "ui_sessions",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("key_id", String(24), nullable=True),
    Column("csrf", String(64), nullable=False),  # the token every change must carry
    Column("created_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
    Index("ix_ui_sessions_expires_at", "expires_at"),
)

# Delivery workers as their heartbeat last reported them (the dashboard's overview).
workers = Table(
    "workers",
    metadata,
    Column("name", String(255), primary_key=True),
    Column("started_at", UTCDateTime, nullable=False),
    Column("last_seen", UTCDateTime, nullable=False),
    Column("delivered", BigInteger, nullable=False),
)
