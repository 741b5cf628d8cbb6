"""The dashboard: its sign-ins (ui_sessions), the workers' heartbeats (workers), and
an index for its charts of recent typed events (email_events by type and time).

No table is rebuilt: `emails` is untouched, so the status_counts triggers (0011) stay.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ui_sessions",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("key_id", sa.String(24), nullable=True),
        sa.Column("csrf", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_ui_sessions_expires_at", "ui_sessions", ["expires_at"])
    op.create_table(
        "workers",
        sa.Column("name", sa.String(255), primary_key=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen", sa.DateTime(timezone=True), nullable=False),
        sa.Column("delivered", sa.BigInteger(), nullable=False),
    )
    op.create_index(
        "ix_email_events_type_at",
        "email_events",
        ["type", "at"],
        postgresql_where=sa.text("type IS NOT NULL"),
        sqlite_where=sa.text("type IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_email_events_type_at", "email_events")
    op.drop_table("workers")
    op.drop_index("ix_ui_sessions_expires_at", "ui_sessions")
    op.drop_table("ui_sessions")
