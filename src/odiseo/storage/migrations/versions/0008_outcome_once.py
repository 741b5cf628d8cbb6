"""An attempt's outcome enters the history once, however often its write is retried.

A result write retried after it had in fact committed logged the attempt twice; the
copies already stored are removed (the first kept) before the unique index is made.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

OUTCOMES = "kind IN ('sent', 'retry', 'failed')"


def upgrade() -> None:
    op.execute(
        "DELETE FROM email_events WHERE " + OUTCOMES + " AND id NOT IN ("
        "SELECT min(id) FROM email_events WHERE " + OUTCOMES + " "
        "GROUP BY email_id, attempt, at)"
    )
    op.create_index(
        "ux_email_events_outcome",
        "email_events",
        ["email_id", "attempt", "at"],
        unique=True,
        postgresql_where=sa.text(OUTCOMES),
        sqlite_where=sa.text(OUTCOMES),
    )


def downgrade() -> None:
    op.drop_index("ux_email_events_outcome", "email_events")
