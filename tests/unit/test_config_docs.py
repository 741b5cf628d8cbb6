"""The settings, `.env.example`, the README's Configuration table and each command's
`--help` name the same variables: all four come from, or are held to, Settings."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from odiseo.config import COMMANDS, SECTIONS, Settings
from odiseo.config_docs import NOT_SETTINGS, env_example, variables

ROOT = Path(__file__).resolve().parents[2]
SETTINGS = [name.upper() for name in Settings.model_fields]


def readme_table() -> dict[str, str]:
    """The README's Configuration table: variable -> its default cell."""
    text = (ROOT / "README.md").read_text()
    section = text.split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `([A-Z0-9_]+)` \| ([^|]*) \|", section, flags=re.MULTILINE)
    assert rows, "no Configuration table in README.md"
    return dict(rows)


def help_variables(command: str) -> list[str]:
    """The variables `odiseo COMMAND --help` lists, from the real command."""
    shown = subprocess.run(
        [sys.executable, "-m", "odiseo", command, "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    listing = shown.split("environment variables (also read from ./.env):\n", 1)[1]
    return re.findall(r"^  ([A-Z][A-Z0-9_]+)  ", listing, flags=re.MULTILINE)


def test_env_example_is_written_from_the_settings() -> None:
    committed = (ROOT / ".env.example").read_text()
    assert committed == env_example(), "stale .env.example: run `make env-example`"


def test_env_example_names_every_setting_once() -> None:
    named = re.findall(r"^# ([A-Z][A-Z0-9_]+)=", env_example(), flags=re.MULTILINE)
    # The Gmail example repeats the SMTP ones; everything else appears once.
    gmail = env_example().split("Example: Gmail", 1)[1].split("\n\n", 1)[0]
    again = re.findall(r"^# ([A-Z][A-Z0-9_]+)=", gmail, flags=re.MULTILINE)
    assert sorted(named) == sorted(SETTINGS + sorted(NOT_SETTINGS) + again)
    for name in ("API_ACCESS_LOG", "DKIM_DOMAIN", "DKIM_SELECTOR", "DKIM_PRIVATE_KEY"):
        assert f"# {name}=" in env_example()  # the ones issue 17 found missing
    assert "# MAX_MESSAGE_BYTES=10485760" in env_example()


def test_readme_table_names_every_setting_with_its_default() -> None:
    table = readme_table()
    assert sorted(table) == sorted(SETTINGS)
    for variable in variables():
        if variable.default is not None:
            assert f"`{variable.default}`" in table[variable.name], variable.name


@pytest.mark.parametrize("command", COMMANDS)
def test_each_command_help_lists_what_it_reads(command: str) -> None:
    expected = [v.name for v in variables() if command in v.commands]
    assert help_variables(command) == expected
    assert {"DATABASE_URL", "SCHEMA_NAME"} <= set(expected)  # every command opens the store


def test_help_names_what_issue_17_found_missing() -> None:
    api = set(help_variables("api"))
    assert {
        "ALLOW_UNAUTHENTICATED",
        "METRICS_REQUIRE_KEY",
        "RATE_LIMIT_PER_MINUTE",
        "MAX_REQUEST_BYTES",
        "ALLOWED_SENDERS",
        "MAX_MESSAGE_BYTES",
    } <= api
    assert {"DKIM_DOMAIN", "DKIM_SELECTOR", "DKIM_PRIVATE_KEY"} <= set(help_variables("worker"))
    assert "MAX_MESSAGE_BYTES" in help_variables("send")
    assert set(help_variables("run")) == set(SETTINGS) - {"EMAIL_WORKER_METRICS_PORT"}


def test_every_setting_has_its_metadata() -> None:
    for variable in variables():
        assert variable.section in SECTIONS, variable.name
        assert variable.commands and set(variable.commands) <= set(COMMANDS), variable.name
        assert variable.help.strip() == variable.help and len(variable.help) > 10
