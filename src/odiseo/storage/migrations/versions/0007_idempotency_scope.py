"""A client_message_id is unique per API key (idempotency_scope), no longer across keys.

Rows stored before this revision keep the empty scope: that of a keyless API.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

# 0001 left the unique constraint on client_message_id unnamed: PostgreSQL named it
# itself; on SQLite batch mode names it by this convention so that it can be dropped.
_SQLITE_NAMES = {"uq": "uq_%(table_name)s_%(column_0_name)s"}


def _old_constraint() -> str:
    if op.get_bind().dialect.name == "postgresql":
        return "emails_client_message_id_key"
    return "uq_emails_client_message_id"


def upgrade() -> None:
    with op.batch_alter_table("emails", naming_convention=_SQLITE_NAMES) as batch:
        batch.add_column(
            sa.Column(
                "idempotency_scope", sa.String(64), nullable=False, server_default=sa.text("''")
            )
        )
        batch.drop_constraint(_old_constraint(), type_="unique")
    op.create_index(
        "ux_emails_client_key", "emails", ["idempotency_scope", "client_message_id"], unique=True
    )


def downgrade() -> None:
    op.drop_index("ux_emails_client_key", "emails")
    with op.batch_alter_table("emails", naming_convention=_SQLITE_NAMES) as batch:
        batch.drop_column("idempotency_scope")
        batch.create_unique_constraint(_old_constraint(), ["client_message_id"])
