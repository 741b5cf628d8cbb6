"""Attachments, expiry, stored and versioned templates.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
When = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("emails") as batch:
        batch.add_column(sa.Column("template_version", sa.Integer, nullable=True))
        batch.add_column(sa.Column("expires_at", When, nullable=True))
        batch.add_column(
            sa.Column("attachment_count", sa.Integer, nullable=False, server_default=sa.text("0"))
        )
    op.create_table(
        "email_attachments",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("email_id", Id, sa.ForeignKey("emails.id", ondelete="CASCADE"), nullable=False),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("filename", sa.String(255), nullable=False),
        sa.Column("content_type", sa.String(255), nullable=False),
        sa.Column("content_id", sa.String(255), nullable=True),
        sa.Column("data", sa.LargeBinary, nullable=False),
    )
    op.create_index("ix_email_attachments_email_id", "email_attachments", ["email_id"])
    op.create_table(
        "templates",
        sa.Column("id", sa.String(128), primary_key=True),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("subject", sa.Text, nullable=True),
        sa.Column("html", sa.Text, nullable=False),
        sa.Column("text", sa.Text, nullable=True),
        sa.Column("created_at", When, nullable=False),
        sa.Column("updated_at", When, nullable=False),
    )
    op.create_table(
        "template_versions",
        sa.Column("template_id", sa.String(128), primary_key=True),
        sa.Column("version", sa.Integer, primary_key=True),
        sa.Column("subject", sa.Text, nullable=True),
        sa.Column("html", sa.Text, nullable=False),
        sa.Column("text", sa.Text, nullable=True),
        sa.Column("created_at", When, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("template_versions")
    op.drop_table("templates")
    op.drop_table("email_attachments")
    with op.batch_alter_table("emails") as batch:
        batch.drop_column("attachment_count")
        batch.drop_column("expires_at")
        batch.drop_column("template_version")
