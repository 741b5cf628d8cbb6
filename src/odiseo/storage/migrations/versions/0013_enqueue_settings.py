"""The settings the SQL function enqueue() applies (allowed senders, sizes, retries),
copied from the service's own settings by `odiseo migrate` and at every start.

The function itself is installed (CREATE OR REPLACE) by every migration run on
PostgreSQL, after the revisions: its INSERT is written from tables.py's column list
of the running code (storage/enqueue_function.py), so it cannot fall behind the
table. On SQLite the table exists, unused: there is no function to read it.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "enqueue_settings",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("from_email", sa.String(320), nullable=False),
        sa.Column("from_name", sa.String(255), nullable=True),
        sa.Column("allowed_senders", sa.JSON(), nullable=False),
        sa.Column("message_id_domain", sa.String(255), nullable=False),
        sa.Column("max_message_bytes", sa.BigInteger(), nullable=False),
        sa.Column("max_retries", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS enqueue(jsonb)")
    op.drop_table("enqueue_settings")
