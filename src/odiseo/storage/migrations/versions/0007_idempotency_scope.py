"""A client_message_id is unique per API key (idempotency_scope), no longer across keys.

Rows stored before this revision keep the empty scope: that of a keyless API.
The old constraint, unique across keys, is dropped by c001 (contract).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01
"""

from __future__ import annotations

import re

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Expand only: 1.0's unique constraint on client_message_id alone stays, because 1.0
    # inserts with ON CONFLICT (client_message_id), which fails without it. Until c001
    # (a contract revision) drops it, a key stored in one scope is refused in the others.
    # No table rebuild either: adding a column with a default is done in place.
    op.add_column(
        "emails",
        sa.Column("idempotency_scope", sa.String(64), nullable=False, server_default=sa.text("''")),
    )
    op.create_index(
        "ux_emails_client_key", "emails", ["idempotency_scope", "client_message_id"], unique=True
    )


def downgrade() -> None:
    op.drop_index("ux_emails_client_key", "emails")
    # In place (SQLite 3.35 and later): rebuilding emails would lose 0011's triggers.
    op.drop_column("emails", "idempotency_scope")
    _unique_client_message_id()


def _unique_client_message_id() -> None:
    """1.0's unique client_message_id, where the earlier 0007 (which dropped it itself,
    with no c001 to put it back) left none: 0006's code inserts against it."""
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        found = bind.exec_driver_sql(
            "SELECT 1 FROM pg_constraint WHERE conrelid = 'emails'::regclass "
            "AND conname = 'emails_client_message_id_key'"
        ).first()
        if found is None:
            op.execute(
                "ALTER TABLE emails ADD CONSTRAINT emails_client_message_id_key "
                "UNIQUE (client_message_id)"
            )
        return
    table = bind.exec_driver_sql(
        "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'emails'"
    ).scalar_one()
    index = bind.exec_driver_sql(
        "SELECT 1 FROM sqlite_master WHERE type = 'index' AND name = 'ux_emails_client_message_id'"
    ).first()
    if index is None and not re.search(r"UNIQUE \(client_message_id\)", table):
        op.create_index("ux_emails_client_message_id", "emails", ["client_message_id"], unique=True)
