"""Upgrades from 1.0.0 (revision 0005) in two steps, expand then contract (issue 15
point 7), over stored data on both engines.

`store.migrate()` stops before a contract revision on an existing database, so 1.0
processes still running keep the constraint they insert against; `contract=True`
finishes. Nothing stored is lost on the way: on SQLite a table rebuild with foreign keys
on would first delete every event and attachment of the rebuilt table's rows (the
0007 of before did exactly that to a 1.0 database).
"""

from __future__ import annotations

import ast
import dataclasses
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from alembic import command
from alembic.script import Script, ScriptDirectory
from sqlalchemy import exc, text

from odiseo.domain.models import NewEmail, Status
from odiseo.storage.migrate import alembic_config, heads_on_disk
from odiseo.storage.tables import emails
from tests.conftest import open_test_store, sqlalchemy_engine
from tests.store.test_migration_data import migrate, rows
from tests.support.factories import new_email
from tests.support.release import extract

T0 = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


# The newest revision of the main line (expand); c001 is the contract branch.
MAIN_HEAD = next(
    h for h in ScriptDirectory.from_config(alembic_config()).get_heads() if h[0] != "c"
)


async def heads(database_url: tuple[str, str]) -> set[str]:
    return {v for (v,) in await rows(database_url, "SELECT version_num FROM alembic_version")}


def scoped(key: str, scope: str) -> NewEmail:
    return dataclasses.replace(new_email(client_message_id=key), idempotency_scope=scope)


_EMAIL_1_0 = (
    "INSERT INTO emails (message_id, rfc_message_id, client_message_id, status, priority, "
    "attempts, max_retries, next_attempt_at, from_email, to_addrs, cc_addrs, bcc_addrs, "
    "reply_to, headers, subject, html, tags, meta, attachment_count, created_at, updated_at) "
    "VALUES (:id, :rfc, :key, :status, 5, 0, 3, :at, 'noreply@odiseo.io', '[\"u@example.com\"]', "
    "'[]', '[]', '[]', '[]', 'Hello', '<p>hi</p>', '[]', '{}', 1, :at, :at)"
)


async def _database_of_1_0(database_url: tuple[str, str]) -> None:
    """Revision 0005 with what 1.0.0 stored: a keyed pending message and a sent one, each
    with an attachment, the sent one's outcome logged twice (a retried write)."""
    engine = sqlalchemy_engine(*database_url)
    try:
        async with engine.begin() as conn:
            if engine.dialect.name == "postgresql":
                await conn.exec_driver_sql(f'CREATE SCHEMA IF NOT EXISTS "{database_url[1]}"')
    finally:
        await engine.dispose()
    await migrate(database_url, "upgrade", "0005")
    engine = sqlalchemy_engine(*database_url)
    try:
        async with engine.begin() as conn:
            for n, status in enumerate(("pending", "sent")):
                values = {
                    "id": f"00000000-0000-4000-8000-00000000000{n}",
                    "rfc": f"<{n}@odiseo.io>",
                    "key": f"order-{n}",
                    "status": status,
                    "at": T0,
                }
                await conn.execute(text(_EMAIL_1_0), values)
            await conn.execute(
                text(
                    "INSERT INTO email_attachments (email_id, position, filename, content_type, "
                    "data) SELECT id, 0, 'a.txt', 'text/plain', :data FROM emails"
                ),
                {"data": b"hello"},
            )
            for _ in range(2):  # the same outcome twice: 0008 keeps the first
                await conn.execute(
                    text("INSERT INTO email_events (email_id, at, kind, attempt) "
                         "SELECT id, :at, 'sent', 1 FROM emails WHERE status = 'sent'"),
                    {"at": T0},
                )  # fmt: skip
    finally:
        await engine.dispose()


async def _kept(database_url: tuple[str, str]) -> tuple[int, int, dict[str, int]]:
    """Attachments, events, and the status counters (which must equal COUNT(*))."""
    (files,) = await rows(database_url, "SELECT count(*) FROM email_attachments")
    (events,) = await rows(database_url, "SELECT count(*) FROM email_events")
    counted = dict(await rows(database_url, "SELECT status, count(*) FROM emails GROUP BY 1"))
    kept = dict(await rows(database_url, "SELECT status, sum(n) FROM status_counts GROUP BY 1"))
    assert {s: int(n) for s, n in kept.items() if n} == counted
    return files[0], events[0], counted


async def test_an_upgrade_from_1_0_expands_first_and_loses_nothing(
    database_url: tuple[str, str],
) -> None:
    await _database_of_1_0(database_url)
    store = open_test_store(*database_url)
    try:
        assert await store.migrate() == ["c001"]
        assert await heads(database_url) == {MAIN_HEAD}
        assert await _kept(database_url) == (2, 1, {"pending": 1, "sent": 1})
        # 1.0's constraint holds: a key of the empty scope is refused in another scope,
        # without naming the message that has it; a new key is taken as before.
        taken, fresh = await store.enqueue(
            [
                scoped("order-0", "key-a"),
                scoped("order-9", "key-a"),
            ],
            now=T0,
        )
        assert (taken.created, taken.message_id, taken.same_payload) == (False, "", False)
        assert fresh.created
        assert await store.migrate() == ["c001"]  # every start: still expand only

        assert await store.migrate(contract=True) == []
        assert await heads(database_url) == {MAIN_HEAD, "c001"}
        assert await _kept(database_url) == (2, 1, {"pending": 2, "sent": 1})
        (again,) = await store.enqueue([scoped("order-0", "key-a")], now=T0)
        assert again.created
        claimed = await store.claim_due(limit=10, worker="w", lease_seconds=60, now=T0)
        assert {m.status for m in claimed} == {Status.PROCESSING}
        files = {m.email.message_id: m.email.attachments for m in claimed}
        assert [a.data for a in files["00000000-0000-4000-8000-000000000000"]] == [b"hello"]
        assert (await _kept(database_url))[2] == {"processing": 3, "sent": 1}
    finally:
        await store.close()


async def test_a_new_database_gets_every_revision(database_url: tuple[str, str]) -> None:
    store = open_test_store(*database_url)
    try:
        assert await store.migrate() == []
        assert await heads(database_url) == {MAIN_HEAD, "c001"}
        keys = [scoped("k", s) for s in ("a", "b")]
        assert [e.created for e in await store.enqueue(keys, now=T0)] == [True, True]
    finally:
        await store.close()


def test_the_heads_read_without_alembic_are_alembics() -> None:
    """A start on a database at these heads skips Alembic: a revision they missed would
    never be applied."""
    script = ScriptDirectory.from_config(alembic_config())
    assert heads_on_disk() == set(script.get_heads())
    assert len(heads_on_disk()) == 2  # the main line and the contract branch


def test_the_declared_schema_has_no_unique_key_across_scopes() -> None:
    unique = [c.name for c in emails.columns if c.unique]
    assert unique == ["message_id"], unique


# The last session's main (before 0007 became expand-only): its 0007 dropped 1.0's
# unique client_message_id itself.
EARLIER_0007 = "78c6fc0a6ca5fa5b9d5cd8811cd2cebdc89f6aee"
_INSERT_1_0 = _EMAIL_1_0 + " ON CONFLICT (client_message_id) DO NOTHING"


async def _migrated_by(commit: str, database_url: tuple[str, str], into: Path) -> None:
    """The schema the migrations of `commit` make (their head), run as they were."""
    scripts = extract(commit, "src/odiseo/storage/migrations", into)
    engine = sqlalchemy_engine(*database_url)
    try:
        async with engine.begin() as conn:
            if engine.dialect.name == "postgresql":
                await conn.exec_driver_sql(f'CREATE SCHEMA IF NOT EXISTS "{database_url[1]}"')

            def upgrade(sync: Any) -> None:
                config = alembic_config(sync)
                config.set_main_option("script_location", str(scripts))
                command.upgrade(config, "head")

            await conn.run_sync(upgrade)
    finally:
        await engine.dispose()


async def test_a_database_the_earlier_0007_contracted_goes_back_to_1_0_usable(
    database_url: tuple[str, str], tmp_path: Path
) -> None:
    # Downgraded to 0006 (1.0's schema), the database must hold 1.0's unique
    # client_message_id again, or every keyed POST of a 1.0 put back fails. c001's
    # downgrade restores it; but where the earlier 0007 dropped it, no c001 is recorded
    # (odiseo migrate still names it pending), and 0007's downgrade left none.
    await _migrated_by(EARLIER_0007, database_url, tmp_path)
    store = open_test_store(*database_url)
    try:
        assert await store.migrate() == ["c001"]
        assert await heads(database_url) == {MAIN_HEAD}
    finally:
        await store.close()
    await migrate(database_url, "downgrade", "0006")
    engine = sqlalchemy_engine(*database_url)
    try:
        async with engine.begin() as conn:
            values = {"id": "00000000-0000-4000-8000-000000000001", "rfc": "<1@odiseo.io>",
                      "key": "order-1", "status": "pending", "at": T0}  # fmt: skip
            await conn.execute(text(_INSERT_1_0), values)
            again = {**values, "id": "00000000-0000-4000-8000-000000000002", "rfc": "<2@o.io>"}
            await conn.execute(text(_INSERT_1_0), again)  # 1.0's resend: skipped, no error
    except exc.DBAPIError as error:
        raise AssertionError(f"1.0's keyed insert fails at 0006: {error}") from None
    finally:
        await engine.dispose()
    assert await rows(database_url, "SELECT count(*) FROM emails") == [(1,)]
    store = open_test_store(*database_url)
    try:  # and up again, contract included
        assert await store.migrate(contract=True) == []
        assert await heads(database_url) == {MAIN_HEAD, "c001"}
        keys = [scoped("order-1", s) for s in ("a", "b")]
        assert [e.created for e in await store.enqueue(keys, now=T0)] == [True, True]
    finally:
        await store.close()


# What a main-line revision may not do to what 1.0.0 uses: such a change belongs on the
# contract branch. 0009 drops an index only to make it again with a wider predicate.
_CONTRACTING = {"drop_column", "drop_table", "drop_constraint", "rename_table", "drop_index"}
_ALLOWED = {("0009", "drop_index")}
_CONTRACTING_SQL = re.compile(r"\b(DROP|RENAME)\b|SET NOT NULL", re.IGNORECASE)


def _literal(node: ast.expr | None) -> str | None:
    """A string argument's text (an f-string's literal parts)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(_literal(v) or "{}" for v in node.values)
    return None


def _contracting_steps(revision: Script, allowed: set[tuple[str, str]] = _ALLOWED) -> list[str]:
    """The calls of a revision's upgrade() that remove or narrow something."""
    tree = ast.parse(Path(revision.path).read_text())
    (upgrade,) = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "upgrade"]
    found = []
    for node in ast.walk(upgrade):
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
            continue
        name = node.func.attr
        literal = _literal(node.args[0] if node.args else None)
        narrowing = any(
            k.arg == "nullable" and isinstance(k.value, ast.Constant) and k.value.value is False
            for k in node.keywords
        )
        if (
            (name in _CONTRACTING and (revision.revision, name) not in allowed)
            or (name == "alter_column" and narrowing)
            or (name == "batch_alter_table" and literal == "emails")  # SQLite rebuilds it
            or (name == "execute" and literal is not None and _CONTRACTING_SQL.search(literal))
        ):
            found.append(f"{name}({literal!r})")
    return found


def test_main_line_revisions_since_1_0_only_expand() -> None:
    """1.0.0 was revision 0005. Every later revision of the main line runs under 1.0.0
    processes (`odiseo migrate` without --contract), so it only adds."""
    script = ScriptDirectory.from_config(alembic_config())
    main_line = script.iterate_revisions(MAIN_HEAD, "0005")
    offending = {
        r.revision: steps
        for r in main_line
        if r.revision != "0005" and (steps := _contracting_steps(r))
    }
    assert offending == {}, "put these on the contract branch (see README, Upgrading)"
    # The check sees a drop where there is one.
    assert _contracting_steps(script.get_revision("0009"), allowed=set())
    (contract,) = [h for h in script.get_heads() if h != MAIN_HEAD]
    assert _contracting_steps(script.get_revision(contract))
