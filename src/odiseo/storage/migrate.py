"""Run the Alembic migrations on a connection the store has already locked.

Upgrades are online: a revision either adds (expand), and processes of the previous
release keep working beside it, or removes what the previous release still uses
(contract, marked `contract = True` in its module). An existing database is upgraded up
to the first contract revision it lacks; `odiseo migrate --contract`, run once no process
of the previous release is left, goes on to the end. A new database has no older
process to wait for and gets every revision at once.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
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
    current = MigrationContext.configure(connection).get_current_revision()
    target = "head" if contract or current is None else expand_target(config, current)
    command.upgrade(config, target)


def expand_target(config: Config, current: str) -> str:
    """The last revision before the first contract revision after `current` ("head" if
    none is pending)."""
    script = ScriptDirectory.from_config(config)
    pending = list(script.iterate_revisions("head", current))  # newest first
    for revision in reversed(pending):
        if getattr(revision.module, "contract", False):
            down = revision.down_revision
            assert isinstance(down, str), "contract revisions have one parent"
            return down
    return "head"


def pending_contract(connection: Connection) -> list[str]:
    """The contract revisions this database lacks (for `odiseo migrate` to name)."""
    script = ScriptDirectory.from_config(alembic_config(connection))
    current = MigrationContext.configure(connection).get_current_revision()
    return [
        revision.revision
        for revision in script.iterate_revisions("head", current)
        if getattr(revision.module, "contract", False)
    ]
