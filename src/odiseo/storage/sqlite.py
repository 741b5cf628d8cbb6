"""What only SQLite does: WAL, a busy timeout, BEGIN IMMEDIATE for every write.

SQLite is one host: the API and workers must share its file system, and
`odiseo run` (one process) is the way to run it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Row, event, select, text, update
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine
from sqlalchemy.sql import Insert

from odiseo.storage.failures import translate_errors
from odiseo.storage.migrate import upgrade
from odiseo.storage.store import EmailStore, claim_values, sleep_until_woken
from odiseo.storage.tables import CLAIMABLE_SQL, CLIENT_KEY, emails, rate_limits

BUSY_TIMEOUT_MS = 30_000


class SqliteStore(EmailStore):
    """The queue in one SQLite file (the embedded default)."""

    dialect = "sqlite"

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(
            f"sqlite+aiosqlite:///{path}", connect_args={"timeout": BUSY_TIMEOUT_MS / 1000}
        )
        event.listen(engine.sync_engine, "connect", _configure_connection)
        event.listen(engine.sync_engine, "begin", _begin)
        super().__init__(engine)
        self._writer = engine.execution_options(odiseo_write=True)
        self._wake_event = asyncio.Event()

    def __repr__(self) -> str:
        return f"SqliteStore({str(self.path)!r})"

    @contextlib.asynccontextmanager
    async def _write(self) -> AsyncIterator[AsyncConnection]:
        with translate_errors():
            async with self._writer.begin() as conn:
                yield conn

    async def migrate(self) -> None:
        async with self._write() as conn:
            await conn.run_sync(upgrade)

    def _upsert_counter(self) -> Any:
        return sqlite_insert(rate_limits)

    def _insert_skipping_duplicates(self) -> Insert:
        return sqlite_insert(emails).on_conflict_do_nothing(index_elements=CLIENT_KEY)

    async def _wake(self, conn: AsyncConnection) -> None:
        self._wake_event.set()

    async def _after_enqueue(self, conn: AsyncConnection) -> None:
        # Wakes a worker in this process (`odiseo run`); others poll.
        self._wake_event.set()

    async def _claim(
        self, conn: AsyncConnection, *, limit: int, worker: str, until: datetime, now: datetime
    ) -> list[Row[Any]]:
        # The transaction began IMMEDIATE: we hold the write lock, nobody claims in between.
        due = (
            await conn.execute(
                select(emails.c.id, emails.c.status, emails.c.locked_by)
                .where(text(CLAIMABLE_SQL), emails.c.next_attempt_at <= now)
                .order_by(emails.c.priority, emails.c.next_attempt_at, emails.c.id)
                .limit(limit)
            )
        ).all()
        if not due:
            return []
        before = {row.id: (row.status, row.locked_by) for row in due}
        claimed = await conn.execute(
            update(emails)
            .where(emails.c.id.in_(list(before)))
            .values(**claim_values(worker=worker, until=until, now=now))
            .returning(*emails.c)
        )
        return [_with_old(row, *before[row.id]) for row in claimed]

    async def wait_for_work(self, timeout: float) -> None:
        await sleep_until_woken(self._wake_event, timeout)


class _ClaimedRow:
    """A claimed row plus the status and worker it had before the claim."""

    def __init__(self, row: Row[Any], old_status: str, old_worker: str | None) -> None:
        self._row = row
        self.old_status = old_status
        self.old_worker = old_worker

    def __getattr__(self, name: str) -> Any:
        return getattr(self._row, name)


def _with_old(row: Row[Any], old_status: str, old_worker: str | None) -> Any:
    return _ClaimedRow(row, old_status, old_worker)


def _configure_connection(dbapi_connection: Any, _record: Any) -> None:
    # Let SQLAlchemy's "begin" event issue BEGIN itself, so writes can be IMMEDIATE.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _begin(conn: Any) -> None:
    immediate = conn.get_execution_options().get("odiseo_write", False)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")
