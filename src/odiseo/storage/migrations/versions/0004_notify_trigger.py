"""PostgreSQL: wake LISTENing workers from a trigger, saving a round trip per enqueue.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    # One notification per INSERT statement (a whole batch wakes workers once), sent at commit.
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


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP TRIGGER IF EXISTS emails_notify_new_mail ON emails")
    op.execute("DROP FUNCTION IF EXISTS odiseo_notify_new_mail()")
