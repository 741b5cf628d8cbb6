"""Published events (a `type`, a recipient, data, and a webhook fan-out mark on the
history), the suppression list, and a message's one-click unsubscribe URL; a message
whose recipients are all suppressed ends in the new `suppressed` status, its outcome
logged once like the others.

Existing outcome rows get the type they would have been written with; none of them is
marked for webhooks (no endpoint existed to receive them).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

OLD_OUTCOMES = "kind IN ('sent', 'retry', 'failed')"
OUTCOMES = "kind IN ('sent', 'retry', 'failed', 'suppressed')"
TYPES = {"sent": "email.sent", "retry": "email.deferred", "failed": "email.failed"}
TYPES["cancelled"] = "email.cancelled"


def _partial(name: str, columns: list[str], where: str, *, unique: bool = False) -> None:
    op.create_index(
        name,
        "email_events",
        columns,
        unique=unique,
        postgresql_where=sa.text(where),
        sqlite_where=sa.text(where),
    )


def upgrade() -> None:
    op.add_column("emails", sa.Column("list_unsubscribe", sa.Text(), nullable=True))
    with op.batch_alter_table("email_events") as batch:
        batch.alter_column("email_id", existing_type=sa.BigInteger(), nullable=True)
        batch.add_column(sa.Column("type", sa.String(32), nullable=True))
        batch.add_column(sa.Column("recipient", sa.String(320), nullable=True))
        batch.add_column(sa.Column("data", sa.JSON(none_as_null=True), nullable=True))
        batch.add_column(
            sa.Column(
                "webhook_pending", sa.Boolean(), nullable=False, server_default=sa.text("false")
            )
        )
    for kind, type_ in TYPES.items():
        op.execute(f"UPDATE email_events SET type = '{type_}' WHERE kind = '{kind}'")
    op.drop_index("ux_email_events_outcome", "email_events")
    _partial("ux_email_events_outcome", ["email_id", "attempt", "at"], OUTCOMES, unique=True)
    _partial("ix_email_events_type", ["type", "id"], "type IS NOT NULL")
    _partial("ix_email_events_recipient", ["recipient", "id"], "recipient IS NOT NULL")
    _partial("ix_email_events_webhook_pending", ["id"], "webhook_pending")
    op.create_table(
        "suppressions",
        sa.Column("address", sa.String(320), primary_key=True),
        sa.Column("reason", sa.String(16), nullable=False),
        sa.Column("message_id", sa.String(36), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    # 0008 knows no `suppressed` status: such a message ends failed, its last_error
    # saying why ("every recipient is on the suppression list").
    op.execute("UPDATE emails SET status = 'failed' WHERE status = 'suppressed'")
    with op.batch_alter_table("emails") as batch:
        batch.drop_column("list_unsubscribe")
    op.drop_table("suppressions")
    for name in ("ix_email_events_webhook_pending", "ix_email_events_recipient"):
        op.drop_index(name, "email_events")
    op.drop_index("ix_email_events_type", "email_events")
    op.drop_index("ux_email_events_outcome", "email_events")
    _partial("ux_email_events_outcome", ["email_id", "attempt", "at"], OLD_OUTCOMES, unique=True)
    op.execute("DELETE FROM email_events WHERE email_id IS NULL")
    with op.batch_alter_table("email_events") as batch:
        for column in ("webhook_pending", "data", "recipient", "type"):
            batch.drop_column(column)
        batch.alter_column("email_id", existing_type=sa.BigInteger(), nullable=False)
