"""Adaptive throttling: the back-off of each scope a reply asked to slow down
(throttles), shared by every worker.

A new table only: `emails` is untouched, so the migration is online.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "throttles",
        sa.Column("scope", sa.String(16), primary_key=True),
        sa.Column("domain", sa.String(255), primary_key=True),
        sa.Column("until", sa.DateTime(timezone=True), nullable=False),
        sa.Column("recovered_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("onsets", sa.Integer(), nullable=False),
        sa.Column("reply", sa.Text(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("throttles")
