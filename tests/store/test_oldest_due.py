"""oldest_due_seconds() (behind /queue/status, /metrics and the dashboard): the wait of
the earliest due message, whatever the priorities, read at a few index entries however
long the backlog is."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Executable, select, text
from sqlalchemy.dialects import postgresql

from odiseo.domain.lifecycle import WAITING
from odiseo.domain.models import AttemptResult, Outcome
from odiseo.storage.contract import Store
from odiseo.storage.shared import gauges_query, oldest_due_query
from odiseo.storage.tables import emails
from tests.conftest import sqlalchemy_engine
from tests.support.factories import new_email

T0 = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


async def due_times(database_url: tuple[str, str]) -> list[datetime]:
    """The due time of every waiting message, the plain way."""
    engine = sqlalchemy_engine(*database_url)
    try:
        async with engine.connect() as conn:
            rows = await conn.execute(
                select(emails.c.next_attempt_at).where(emails.c.status.in_(WAITING))
            )
            return [t if t.tzinfo else t.replace(tzinfo=UTC) for (t,) in rows.all()]
    finally:
        await engine.dispose()


async def test_oldest_due_over_priorities_and_states(
    store: Store, database_url: tuple[str, str]
) -> None:
    rng = random.Random(15)
    # A message claimed long ago whose lease has run out is processing, not waiting (last
    # in claim order, so the claim below leaves it so).
    await store.enqueue([new_email(priority=100)], now=T0 - timedelta(hours=2))
    (held,) = await store.claim_due(
        limit=1, worker="w", lease_seconds=60, now=T0 - timedelta(hours=2)
    )
    for _ in range(60):
        created = T0 - timedelta(seconds=rng.randint(0, 3600))
        later = created + timedelta(seconds=rng.choice([0, 0, 600, 7200]))
        priority = rng.choice([0, 1, 5, 5, 9, 42, -1])  # the store takes any whole number
        await store.enqueue([new_email(priority=priority, send_at=later)], now=created)
    claimed = await store.claim_due(limit=20, worker="w", lease_seconds=60, now=T0)
    results = [
        AttemptResult(
            email_id=m.id, attempt=m.attempts, outcome=rng.choice(list(Outcome)),
            started_at=T0, finished_at=T0,
            next_attempt_at=T0 - timedelta(seconds=rng.randint(0, 9000)),
        )
        for m in claimed[:15]
    ]  # fmt: skip
    await store.record_results(results, worker="w", now=T0)
    assert held.id not in {m.id for m in claimed}

    times = await due_times(database_url)
    for now in (T0 - timedelta(hours=3), T0 - timedelta(minutes=30), T0, T0 + timedelta(hours=3)):
        due = [t for t in times if t <= now]
        expected = (now - min(due)).total_seconds() if due else 0.0
        assert await store.oldest_due_seconds(now=now) == pytest.approx(expected, abs=0.001)
    assert await store.oldest_due_seconds(now=T0) > 0  # the scenario has due mail


async def test_oldest_due_with_nothing_waiting(store: Store) -> None:
    assert await store.oldest_due_seconds(now=T0) == 0.0
    await store.enqueue([new_email(send_at=T0 + timedelta(hours=1))], now=T0)
    assert await store.oldest_due_seconds(now=T0) == 0.0
    assert await store.oldest_due_seconds(now=T0 + timedelta(hours=2)) == 3600.0


def rows_read(node: dict[str, Any]) -> int:
    """Rows the plan's scans of `emails` returned, over all their loops."""
    own = node["Actual Rows"] * node["Actual Loops"] if node.get("Relation Name") == "emails" else 0
    return own + sum(rows_read(child) for child in node.get("Plans", []))


@pytest.mark.parametrize("engine", ["postgres"])
@pytest.mark.parametrize("query", [oldest_due_query, gauges_query])
async def test_oldest_due_reads_a_few_entries_of_a_long_backlog(
    store: Store, database_url: tuple[str, str], query: Callable[[datetime], Executable]
) -> None:
    """5,000 due messages in three priorities: the statement reads a handful of index
    entries, not the backlog (a plain min() read every entry of the claim index); so
    does /metrics' statement (store.gauges), which holds the same walk."""
    for priority in (0, 5, 9):
        for start in range(0, 1700, 500):
            batch = [new_email(priority=priority) for _ in range(min(500, 1700 - start))]
            await store.enqueue(batch, now=T0 - timedelta(seconds=start))
    statement = query(T0).compile(
        dialect=postgresql.dialect(),
        compile_kwargs={"literal_binds": True, "render_postcompile": True},
    )
    engine = sqlalchemy_engine(*database_url)
    try:
        async with engine.connect() as conn:
            await conn.execute(text("ANALYZE emails"))
            plan = await conn.scalar(text(f"EXPLAIN (ANALYZE, FORMAT JSON) {statement}"))
            earliest = await conn.scalar(text(str(statement)))
    finally:
        await engine.dispose()
    assert earliest is not None
    assert await store.oldest_due_seconds(now=T0) == pytest.approx(1500.0, abs=0.001)
    assert (await store.gauges(now=T0)).oldest_due_seconds == pytest.approx(1500.0, abs=0.001)
    tree = (plan if isinstance(plan, list) else json.loads(plan))[0]["Plan"]
    assert rows_read(tree) < 30, json.dumps(tree, indent=1)
