"""Exact counts per status without counting the table: status_counts, kept by triggers.

`/queue/status`, `/metrics` and the dashboard ask for the number of messages in each
status. COUNT(*) reads every row (about 50 ms at a million); these counters answer
from a few dozen rows however long the history grows.

Triggers keep them, so every writer — the store's statements, an operator's change,
a purge, SQL that applications run themselves — counts alike, in the transaction
that changes the rows. On PostgreSQL one trigger per statement (with transition
tables) adds the statement's net change per status, into the row of a shard chosen
by the backend (pg_backend_pid() % 16): concurrent transactions update different
rows, so the counters never serialise commits (a single row per status would).
SQLite has one writer at a time and row triggers only: one row per status.

A later migration that rebuilds `emails` on SQLite (batch mode) must recreate the
SQLite triggers below.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

SHARDS = 16

_PG_UPSERT = f"""
        INSERT INTO status_counts (status, shard, n)
        SELECT status, pg_backend_pid() % {SHARDS}, sum(change) FROM ({{moved}}) AS moved
        GROUP BY status HAVING sum(change) <> 0
        ON CONFLICT (status, shard) DO UPDATE SET n = status_counts.n + EXCLUDED.n;"""
_PG_FUNCTION = f"""
CREATE OR REPLACE FUNCTION odiseo_count_statuses() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN{_PG_UPSERT.format(moved="SELECT status, 1 AS change FROM new_rows")}
    ELSIF TG_OP = 'DELETE' THEN{
    _PG_UPSERT.format(moved="SELECT status, -1 AS change FROM old_rows")
}
    ELSE{
    _PG_UPSERT.format(
        moved="SELECT status, 1 AS change FROM new_rows UNION ALL SELECT status, -1 FROM old_rows"
    )
}
    END IF;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql
"""
# A trigger with transition tables serves one event; each names only the tables it has
# (plpgsql plans a branch when it first runs it, so the others' tables are never sought).
_PG_TRIGGERS = {
    "insert": "REFERENCING NEW TABLE AS new_rows",
    "update": "REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows",
    "delete": "REFERENCING OLD TABLE AS old_rows",
}
_SQLITE_TRIGGERS = {
    "insert": """AFTER INSERT ON emails BEGIN
        INSERT INTO status_counts (status, shard, n) VALUES (NEW.status, 0, 1)
        ON CONFLICT (status, shard) DO UPDATE SET n = n + 1; END""",
    "update": """AFTER UPDATE OF status ON emails WHEN OLD.status IS NOT NEW.status BEGIN
        UPDATE status_counts SET n = n - 1 WHERE status = OLD.status AND shard = 0;
        INSERT INTO status_counts (status, shard, n) VALUES (NEW.status, 0, 1)
        ON CONFLICT (status, shard) DO UPDATE SET n = n + 1; END""",
    "delete": """AFTER DELETE ON emails BEGIN
        UPDATE status_counts SET n = n - 1 WHERE status = OLD.status AND shard = 0; END""",
}


def upgrade() -> None:
    op.create_table(
        "status_counts",
        sa.Column("status", sa.String(16), primary_key=True),
        sa.Column("shard", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("n", sa.BigInteger(), nullable=False),
    )
    postgres = op.get_bind().dialect.name == "postgresql"
    if postgres:
        op.execute(_PG_FUNCTION)
    for event, clause in (_PG_TRIGGERS if postgres else _SQLITE_TRIGGERS).items():
        if postgres:
            op.execute(
                f"CREATE TRIGGER emails_count_{event} AFTER {event.upper()} ON emails {clause} "
                "FOR EACH STATEMENT EXECUTE FUNCTION odiseo_count_statuses()"
            )
        else:
            op.execute(f"CREATE TRIGGER emails_count_{event} {clause}")
    # The triggers hold a lock on emails until this transaction commits (PostgreSQL), or
    # the whole file is ours (SQLite): nothing changes between them and this count.
    op.execute(
        "INSERT INTO status_counts (status, shard, n) "
        "SELECT status, 0, count(*) FROM emails GROUP BY status"
    )


def downgrade() -> None:
    for event in _PG_TRIGGERS:
        op.execute(
            f"DROP TRIGGER IF EXISTS emails_count_{event}"
            + (" ON emails" if op.get_bind().dialect.name == "postgresql" else "")
        )
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS odiseo_count_statuses()")
    op.drop_table("status_counts")
