"""Retention and data protection: when a sent message's content was dropped
(REDACT_AFTER_SEND), and the audit log of admin actions.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("emails", sa.Column("redacted_at", sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        "audit_log",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(64), nullable=False),
        sa.Column("action", sa.String(255), nullable=False),
        sa.Column("target", sa.Text(), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("audit_log")
    # Not batch mode: rebuilding emails on SQLite would lose 0011's counting triggers
    # (SQLite 3.35 and later drop a column in place).
    op.drop_column("emails", "redacted_at")
