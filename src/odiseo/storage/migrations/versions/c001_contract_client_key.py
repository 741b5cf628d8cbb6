"""Contract: drop 1.0's unique constraint on client_message_id alone, so that a key is
unique within its scope only (0007 made that index and left this one for 1.0.0).

1.0 inserts with ON CONFLICT (client_message_id), which needs this constraint: run it
only once no 1.0 process uses the database (`odiseo migrate --contract`; a new database
gets it at once). A database upgraded by an earlier 0007, which dropped the constraint
itself, has nothing left to drop.

On SQLite a table constraint goes only with its table: emails is rebuilt (created anew,
copied, the old one dropped with foreign keys off, renamed), and its indexes and
triggers (0011's counters among them) are made again from their stored SQL.

Contract revisions form a branch of their own (label `contract`), so the expand
revisions that later work adds to the main line are never held back behind one.

Revision ID: c001
Revises: 0007
Create Date: 2026-12-01
"""

from __future__ import annotations

import re

import sqlalchemy as sa
from alembic import op

revision = "c001"
down_revision = "0007"
branch_labels = ("contract",)
depends_on = None
contract = True

_PG_CONSTRAINT = "emails_client_message_id_key"
_SQLITE_CONSTRAINT = re.compile(r",\s*UNIQUE \(client_message_id\)")


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"ALTER TABLE emails DROP CONSTRAINT IF EXISTS {_PG_CONSTRAINT}")
    else:
        _rebuild_sqlite_emails()


def downgrade() -> None:
    # Fails if two scopes now hold one key: which of them 1.0 should see is not ours to say.
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"ALTER TABLE emails ADD CONSTRAINT {_PG_CONSTRAINT} UNIQUE (client_message_id)")
    else:  # any unique index on the column serves 1.0's ON CONFLICT; no rebuild needed
        op.create_index("ux_emails_client_message_id", "emails", ["client_message_id"], unique=True)


def _rebuild_sqlite_emails() -> None:
    bind = op.get_bind()
    if bind.scalar(sa.text("PRAGMA foreign_keys")):
        raise RuntimeError("c001 rebuilds emails: run it with foreign keys off (odiseo migrate)")
    index = bind.exec_driver_sql(
        "SELECT 1 FROM sqlite_master WHERE type = 'index' AND name = 'ux_emails_client_message_id'"
    ).first()
    if index is not None:  # made by this revision's downgrade
        op.drop_index("ux_emails_client_message_id", "emails")
    table = bind.exec_driver_sql(
        "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'emails'"
    ).scalar_one()
    if not _SQLITE_CONSTRAINT.search(table):
        return
    kept = [
        sql
        for (sql,) in bind.exec_driver_sql(
            "SELECT sql FROM sqlite_master WHERE tbl_name = 'emails' "
            "AND type IN ('index', 'trigger') AND sql IS NOT NULL ORDER BY type, name"
        )
    ]
    create = _SQLITE_CONSTRAINT.sub("", table, count=1)
    create = re.sub(r'^CREATE TABLE "?emails"?', 'CREATE TABLE "emails_contract"', create)
    bind.exec_driver_sql(create)
    bind.exec_driver_sql("INSERT INTO emails_contract SELECT * FROM emails")
    bind.exec_driver_sql("DROP TABLE emails")
    bind.exec_driver_sql("ALTER TABLE emails_contract RENAME TO emails")
    for sql in kept:
        bind.exec_driver_sql(sql)
