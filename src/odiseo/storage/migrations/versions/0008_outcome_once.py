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
    # EXISTS, not NOT IN (SELECT min(id) …): PostgreSQL runs a NOT IN whose subquery
    # outgrows work_mem as a scan of it per row (quadratic in the events), all of it
    # under the locks the upgrade holds while 1.0.0 waits (README, Upgrading).
    op.execute(
        "DELETE FROM email_events WHERE " + OUTCOMES + " AND EXISTS ("
        "SELECT 1 FROM email_events AS kept WHERE kept." + OUTCOMES + " "
        "AND kept.email_id = email_events.email_id AND kept.attempt = email_events.attempt "
        "AND kept.at = email_events.at AND kept.id < email_events.id)"
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
