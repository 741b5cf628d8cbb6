"""Run the Alembic migrations on a connection the store has already locked.

Upgrades are online: a revision either adds (expand), and processes of the previous
release keep working beside it, or removes what the previous release still uses
(contract, marked `contract = True` in its module, on a branch of their own labelled
`contract`, so that no later expand revision waits behind one). An existing database
gets the main line only; `odiseo migrate --contract`, run once no process of the
previous release is left, adds the contract branch. A new database has no older
process to wait for and gets every revision at once.

A database already at every head (main line and contract branch) is the common case
at each start: it is recognised without Alembic, whose import (with Mako and every
dialect's DDL) would stay in the serving process's memory for nothing.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection

if TYPE_CHECKING:
    from alembic.config import Config
    from alembic.script import Script

MIGRATIONS = Path(__file__).with_name("migrations")
_ASSIGNED = re.compile(r"^(revision|down_revision)\s*=\s*(.+)$", re.MULTILINE)


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic configuration pointing at our migrations (no alembic.ini needed)."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def upgrade(connection: Connection, *, contract: bool = False) -> None:
    """Bring the schema to the newest version this database may have now (see above),
    inside the caller's transaction."""
    if at_every_head(connection):
        return
    from alembic import command
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    config = alembic_config(connection)
    current = MigrationContext.configure(connection).get_current_heads()
    if contract or not current:
        command.upgrade(config, "heads")
        return
    script = ScriptDirectory.from_config(config)
    for head in script.get_heads():
        if not _is_contract(script.get_revision(head)):
            command.upgrade(config, head)


def up_to_date(connection: Connection, *, contract: bool = False) -> bool:
    """Whether upgrade() would apply nothing (every head it goes to is applied)."""
    if at_every_head(connection):
        return True
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(alembic_config(connection))
    current = set(MigrationContext.configure(connection).get_current_heads())
    if not current:
        return False
    wanted = [
        head
        for head in script.get_heads()
        if contract or not _is_contract(script.get_revision(head))
    ]
    return set(wanted) <= current


def pending_contract(connection: Connection) -> list[str]:
    """The contract revisions this database lacks (for `odiseo migrate` to name)."""
    if at_every_head(connection):
        return []
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(alembic_config(connection))
    current = MigrationContext.configure(connection).get_current_heads()
    applied = {r.revision for r in script.iterate_revisions(current, "base") if r is not None}
    return sorted(
        r.revision for r in script.walk_revisions() if _is_contract(r) and r.revision not in applied
    )


def _is_contract(revision: Script | None) -> bool:
    return revision is not None and bool(getattr(revision.module, "contract", False))


def at_every_head(connection: Connection) -> bool:
    """Whether the database has every head of versions/ applied: nothing to upgrade,
    no contract step pending. Reads alembic_version with one query, without Alembic."""
    if not inspect(connection).has_table("alembic_version"):
        return False
    applied = {
        row[0] for row in connection.execute(text("SELECT version_num FROM alembic_version"))
    }
    return applied == heads_on_disk()


def heads_on_disk() -> frozenset[str]:
    """The heads of versions/, read from the revision files without importing them:
    every revision that no other one names as its down_revision."""
    revisions: set[str] = set()
    revised: set[str] = set()
    for path in (MIGRATIONS / "versions").glob("*.py"):
        assigned = {
            name: ast.literal_eval(value) for name, value in _ASSIGNED.findall(path.read_text())
        }
        revisions.add(assigned["revision"])
        down = assigned.get("down_revision")
        revised.update([down] if isinstance(down, str) else down or ())
    return frozenset(revisions) - revised
