"""Statements built once and compiled once (`database.fixed`) give the SQL and arguments
a statement built per call with the same values gives, lists of any length included."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Integer, bindparam, select, update

from odiseo.storage.database import compiled, fixed
from odiseo.storage.tables import email_events, webhook_deliveries

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
_D = webhook_deliveries.c


def test_a_fixed_statement_compiles_as_one_built_with_its_values() -> None:
    lease = fixed(
        update(webhook_deliveries)
        .where(_D.id.in_(bindparam("ids", expanding=True)))
        .values(locked_by=bindparam("worker"), updated_at=bindparam("now"))
        .returning(_D.id)
    )
    for ids in ([7], [3, 1, 2], [], [5, 6]):
        built = (
            update(webhook_deliveries)
            .where(_D.id.in_(ids))
            .values(locked_by="w", updated_at=NOW)
            .returning(_D.id)
        )
        assert compiled(lease, [{"ids": ids, "worker": "w", "now": NOW}]) == compiled(built)


def test_a_fixed_select_takes_new_values_each_call() -> None:
    events = fixed(
        select(email_events.c.id)
        .where(email_events.c.at <= bindparam("now"))
        .limit(bindparam("limit", type_=Integer))
    )
    for limit in (1, 200):
        built = select(email_events.c.id).where(email_events.c.at <= NOW).limit(limit)
        assert compiled(events, [{"now": NOW, "limit": limit}]) == compiled(built)
