"""What finds a message again when mail comes back: the relay's id for it (recorded
with email.sent) and an index on the Message-IDs that are not Odiseo's own.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

FOREIGN = "substr(rfc_message_id, 2, 36) <> message_id"


def upgrade() -> None:
    op.add_column("emails", sa.Column("relay_message_id", sa.String(255), nullable=True))
    op.create_index(
        "ix_emails_relay_message_id",
        "emails",
        ["relay_message_id"],
        postgresql_where=sa.text("relay_message_id IS NOT NULL"),
        sqlite_where=sa.text("relay_message_id IS NOT NULL"),
    )
    op.create_index(
        "ix_emails_foreign_rfc_message_id",
        "emails",
        ["rfc_message_id"],
        postgresql_where=sa.text(FOREIGN),
        sqlite_where=sa.text(FOREIGN),
    )


def downgrade() -> None:
    op.drop_index("ix_emails_foreign_rfc_message_id", "emails")
    op.drop_index("ix_emails_relay_message_id", "emails")
    # Not batch mode: a rebuilt emails table would lose the status_counts triggers (0011).
    op.drop_column("emails", "relay_message_id")
