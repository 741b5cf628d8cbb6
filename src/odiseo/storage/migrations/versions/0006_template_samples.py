"""Stored templates keep the sample values a save renders them with (sample_variables).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for table in ("templates", "template_versions"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("sample_variables", sa.JSON, nullable=True))


def downgrade() -> None:
    for table in ("template_versions", "templates"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("sample_variables")
