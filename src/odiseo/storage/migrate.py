"""Run the Alembic migrations on a connection the store has already locked.

Upgrades are online: a revision either adds (expand), and processes of the previous
release keep working beside it, or removes what the previous release still uses
(contract, marked `contract = True` in its module, on a branch of their own labelled
`contract`, so that no later expand revision waits behind one). An existing database
gets the main line only; `odiseo migrate --contract`, run once no process of the
previous release is left, adds the contract branch. A new database has no older
process to wait for and gets every revision at once.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import Script, ScriptDirectory
from sqlalchemy.engine import Connection

MIGRATIONS = Path(__file__).with_name("migrations")


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic configuration pointing at our migrations (no alembic.ini needed)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def upgrade(connection: Connection, *, contract: bool = False) -> None:
    """Bring the schema to the newest version this database may have now (see above),
    inside the caller's transaction."""
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
    script = ScriptDirectory.from_config(alembic_config(connection))
    current = MigrationContext.configure(connection).get_current_heads()
    applied = {r.revision for r in script.iterate_revisions(current, "base") if r is not None}
    return sorted(
        r.revision for r in script.walk_revisions() if _is_contract(r) and r.revision not in applied
    )


def _is_contract(revision: Script | None) -> bool:
    return revision is not None and bool(getattr(revision.module, "contract", False))
