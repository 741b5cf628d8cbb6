"""The queue: emails and their event history.

Revision ID: 0001
Revises:
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
When = sa.DateTime(timezone=True)
CLAIMABLE = "status IN ('pending', 'scheduled', 'processing')"


def upgrade() -> None:
    op.create_table(
        "emails",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("message_id", sa.String(36), nullable=False),
        sa.Column("rfc_message_id", sa.String(255), nullable=False),
        sa.Column("client_message_id", sa.String(255), nullable=True),
        sa.Column("payload_hash", sa.String(64), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("priority", sa.Integer, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False, server_default=sa.text("0")),
        sa.Column("max_retries", sa.Integer, nullable=False),
        sa.Column("next_attempt_at", When, nullable=True),
        sa.Column("locked_until", When, nullable=True),
        sa.Column("locked_by", sa.String(255), nullable=True),
        sa.Column("from_email", sa.String(320), nullable=False),
        sa.Column("from_name", sa.String(255), nullable=True),
        sa.Column("to_addrs", sa.JSON, nullable=False),
        sa.Column("cc_addrs", sa.JSON, nullable=False),
        sa.Column("bcc_addrs", sa.JSON, nullable=False),
        sa.Column("reply_to", sa.JSON, nullable=False),
        sa.Column("headers", sa.JSON, nullable=False),
        sa.Column("subject", sa.Text, nullable=False),
        sa.Column("html", sa.Text, nullable=True),
        sa.Column("text", sa.Text, nullable=True),
        sa.Column("template_id", sa.String(128), nullable=True),
        sa.Column("tags", sa.JSON, nullable=False),
        sa.Column("meta", sa.JSON, nullable=False),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.Column("created_at", When, nullable=False),
        sa.Column("updated_at", When, nullable=False),
        sa.Column("sent_at", When, nullable=True),
        sa.UniqueConstraint("message_id"),
        sa.UniqueConstraint("client_message_id"),
    )
    op.create_index(
        "ix_emails_due",
        "emails",
        ["priority", "next_attempt_at", "id"],
        postgresql_where=sa.text(CLAIMABLE),
        sqlite_where=sa.text(CLAIMABLE),
    )
    op.create_index("ix_emails_status", "emails", ["status"])
    op.create_table(
        "email_events",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("email_id", Id, sa.ForeignKey("emails.id", ondelete="CASCADE"), nullable=False),
        sa.Column("at", When, nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("attempt", sa.Integer, nullable=True),
        sa.Column("smtp_code", sa.Integer, nullable=True),
        sa.Column("response", sa.Text, nullable=True),
        sa.Column("duration_ms", sa.Integer, nullable=True),
        sa.Column("worker", sa.String(255), nullable=True),
    )
    op.create_index("ix_email_events_email_id", "email_events", ["email_id"])


def downgrade() -> None:
    op.drop_table("email_events")
    op.drop_table("emails")
