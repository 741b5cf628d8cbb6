"""Issue 17, stumble 1: a database Odiseo cannot use stops every command with one line
naming DATABASE_URL (password masked), the host and the cause, exit status 2 — never a
traceback. Real processes against the real PostgreSQL: a closed port, a name that does
not resolve, a role that does not exist, a role that may not log in, a missing database,
a role without privileges."""

from __future__ import annotations

import concurrent.futures
import os
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest

from tests.conftest import run_apart
from tests.support.pgcluster import ThrowawayCluster
from tests.support.postgres import TEST_DATABASE_URL, drop_schema, require_postgres
from tests.support.processes import ODISEO, Launcher, base_env
from tests.support.smtp import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

PASSWORD = "s3cret-Pa55word"
COMMANDS = [
    ["run"],
    ["api"],
    ["worker"],
    ["smtp"],
    ["migrate"],
    ["send", "--to", "a@example.com", "--subject", "s", "--body", "<p>b</p>"],
    ["status"],
    ["suppressions", "list"],
]


@dataclass(frozen=True)
class Problem:
    name: str
    url: str
    host: str
    cause: str


@pytest.fixture(scope="module")
def problems() -> Iterator[list[Problem]]:
    """Each database problem as a DATABASE_URL, with two throwaway roles on the server."""
    run_apart(require_postgres())
    tag = uuid.uuid4().hex[:10]
    noperm, nologin = f"odiseo_noperm_{tag}", f"odiseo_nologin_{tag}"

    async def roles(sql: str) -> None:
        conn = await asyncpg.connect(TEST_DATABASE_URL, timeout=5)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    run_apart(roles(f'CREATE ROLE "{noperm}" LOGIN; CREATE ROLE "{nologin}" NOLOGIN'))
    server = "127.0.0.1:5432"
    try:
        yield [
            Problem(
                "refused",
                f"postgresql://odiseo:{PASSWORD}@127.0.0.1:1/mail",
                "host 127.0.0.1, port 1",
                "connection refused",
            ),
            Problem(
                "unknown host",
                f"postgresql://odiseo:{PASSWORD}@db-{tag}.invalid:5432/mail",
                f"host db-{tag}.invalid, port 5432",
                "unknown host name",
            ),
            Problem(
                "unknown role",
                f"postgresql://nobody_{tag}:{PASSWORD}@{server}/test",
                "host 127.0.0.1, port 5432",
                f'role "nobody_{tag}" does not exist',
            ),
            Problem(
                "role may not log in",
                f"postgresql://{nologin}:{PASSWORD}@{server}/test",
                "host 127.0.0.1, port 5432",
                f'role "{nologin}" is not permitted to log in',
            ),
            Problem(
                "missing database",
                f"postgresql://postgres@{server}/missing_{tag}",
                "host 127.0.0.1, port 5432",
                f'database "missing_{tag}" does not exist',
            ),
            Problem(
                "no privilege",
                f"postgresql://{noperm}:{PASSWORD}@{server}/test",
                "host 127.0.0.1, port 5432",
                "permission denied for database test",
            ),
        ]
    finally:
        run_apart(roles(f'DROP ROLE IF EXISTS "{noperm}"; DROP ROLE IF EXISTS "{nologin}"'))


def run_odiseo(args: list[str], url: str, cwd: Path, *, schema: str = "odiseo_unused") -> str:
    """Run one command to its end; return its stderr after checking the one-line contract."""
    env = {
        "PATH": os.environ.get("PATH", ""),
        "DATABASE_URL": url,
        "SCHEMA_NAME": schema,
        "LOG_TO_FILE": "false",
        "API_PORT": "1",  # never reached: the database check comes first
        "SMTP_SUBMISSION_PORT": "1",  # `odiseo smtp` needs a listener (and a key) to start
        "API_KEYS": "key-of-the-database-error-test",
    }
    done = subprocess.run(
        [str(ODISEO), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60
    )
    said = f"odiseo {' '.join(args)} with {url}: exit {done.returncode}\n{done.stderr}"
    assert done.returncode == 2, said
    assert "Traceback" not in done.stderr and done.stdout == "", said
    ours = [line for line in done.stderr.splitlines() if line.startswith("odiseo: ")]
    assert len(ours) == 1, said
    # Log lines (the keyless-API warning) may come before; nothing comes after our line.
    assert done.stderr.rstrip().endswith(ours[0]), said
    assert PASSWORD not in done.stderr, said
    return ours[0]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c[0])
def test_database_problems_stop_the_command_in_one_line(
    command: list[str], problems: list[Problem], tmp_path: Path
) -> None:
    """`run` and `worker` (where the tracebacks were) meet every problem; the other
    commands, which share the same edge in cli.main, one problem each, in turn."""
    if command[0] not in {"run", "worker"}:
        problems = [problems[COMMANDS.index(command) % len(problems)]]
    with concurrent.futures.ThreadPoolExecutor(max_workers=3) as pool:
        lines = list(pool.map(lambda p: run_odiseo(command, p.url, tmp_path), problems))
    for problem, line in zip(problems, lines, strict=True):
        masked = problem.url.replace(f":{PASSWORD}@", ":***@")
        assert f"DATABASE_URL={masked} ({problem.host})" in line, (problem.name, line)
        assert problem.cause in line, (problem.name, line)
        assert line.startswith(
            "odiseo: database unavailable: "
            if problem.name in {"refused", "unknown host"}
            else "odiseo: database refused: "
        ), line


@pytest.mark.parametrize("command", [["run", "--no-migrate"], ["worker", "--no-migrate"]])
def test_no_migrate_with_a_schema_this_role_cannot_use(
    command: list[str], problems: list[Problem], tmp_path: Path
) -> None:
    """The schema exists (migrated by its owner) but this role has no privilege on it."""
    schema = f"odiseo_test_{uuid.uuid4().hex[:12]}"
    owner = run_odiseo_ok(["migrate"], TEST_DATABASE_URL, tmp_path, schema=schema)
    try:
        noperm = next(p for p in problems if p.name == "no privilege")
        line = run_odiseo(command, noperm.url, tmp_path, schema=schema)
        assert 'relation "emails" does not exist' in line
        assert f"SCHEMA_NAME={schema}" in line and "odiseo migrate" in line
    finally:
        run_apart(drop_schema(schema))
    assert owner == "schema is up to date"


@pytest.mark.parametrize("command", [["worker", "--no-migrate"]])
def test_no_migrate_starts_while_the_database_is_down(
    command: list[str], launcher: Launcher, tmp_path: Path
) -> None:
    """--no-migrate is for a database that may come up later: a warning, not a stop."""
    url = f"postgresql://odiseo:{PASSWORD}@127.0.0.1:{free_port()}/mail"
    process = launcher.start(command, base_env(DATABASE_URL=url))
    process.wait_for_log("starting anyway (--no-migrate)")
    assert "(host 127.0.0.1, port" in process.stderr and PASSWORD not in process.stderr
    assert process.terminate() == 0, process.output()


@pytest.mark.parametrize("command", [["migrate"], ["api"], ["worker"]])
def test_a_server_not_accepting_connections_yet_is_one_line(
    command: list[str], tmp_path: Path
) -> None:
    """A PostgreSQL still starting up (compose starts the api beside it) answers 57P03;
    SQLAlchemy's asyncpg dialect wraps that in an Error of its own, and the api printed a
    traceback instead of this line, then restarted."""
    cluster = ThrowawayCluster().init()
    try:
        cluster.start_as_cold_standby()
        line = run_odiseo(command, cluster.url, tmp_path)
    finally:
        cluster.destroy()
    assert line.startswith("odiseo: database unavailable: DATABASE_URL="), line
    assert "not accepting connections" in line, line


def test_a_bad_sqlite_path_is_one_line_too(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    url = f"sqlite:///{blocker}/odiseo.db"
    line = run_odiseo(["status"], url, tmp_path)
    assert line.startswith(f"odiseo: database unavailable: DATABASE_URL={url} (SQLite file ")
    assert line.endswith(f"): File exists: {blocker}")  # the folder it needs is a file


def run_odiseo_ok(args: list[str], url: str, cwd: Path, *, schema: str) -> str:
    env = {"PATH": os.environ.get("PATH", ""), "DATABASE_URL": url, "SCHEMA_NAME": schema}
    env["LOG_TO_FILE"] = "false"
    done = subprocess.run(
        [str(ODISEO), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()
