"""PostgreSQL: drop the per-INSERT NOTIFY trigger; enqueuing processes wake workers instead.

A transaction that NOTIFYs takes a database-wide lock at commit, so the trigger
serialised every enqueue's commit (fsync included); bench/README.md has what it
cost. The store now sends one coalesced NOTIFY after its inserts have committed
(PostgresStore._wake_after_commit).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP TRIGGER IF EXISTS emails_notify_new_mail ON emails")
    op.execute("DROP FUNCTION IF EXISTS odiseo_notify_new_mail()")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(
        """
        CREATE OR REPLACE FUNCTION odiseo_notify_new_mail() RETURNS trigger AS $$
        BEGIN
            PERFORM pg_notify(left('odiseo_' || TG_TABLE_SCHEMA, 63), '');
            RETURN NULL;
        END;
        $$ LANGUAGE plpgsql
        """
    )
    op.execute(
        """
        CREATE TRIGGER emails_notify_new_mail AFTER INSERT ON emails
        FOR EACH STATEMENT EXECUTE FUNCTION odiseo_notify_new_mail()
        """
    )
