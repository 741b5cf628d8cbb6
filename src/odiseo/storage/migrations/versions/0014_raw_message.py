"""A message submitted over SMTP keeps its own bytes: `raw_message`, sent as it is.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("emails", sa.Column("raw_message", sa.LargeBinary(), nullable=True))


def downgrade() -> None:
    # Not batch mode: a rebuilt emails table would lose the status_counts triggers (0011).
    op.drop_column("emails", "raw_message")
