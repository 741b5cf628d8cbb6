"""`.env.example` and each command's `--help` list, written from the settings' own metadata.

`python -m odiseo.config_docs` (`make env-example`) rewrites `.env.example`; a test
holds the committed file to it, so neither can drift from `Settings`.
"""

from __future__ import annotations

import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from odiseo.config import SECTIONS, Settings

HEADER = """\
# Odiseo configuration: copy to .env and edit (`cp .env.example .env`).
# Read from the environment and from ./.env in the working directory; the
# environment wins. docker compose reads this file too (env_file and ${...}).
#
# A commented-out line shows the default that applies when it is left out
# (or an example, where there is no useful default). Uncomment a line only to
# change it. A blank value counts as unset. Keep values plain: no quotes and
# no comment after a value.
#
# Written by `make env-example` from src/odiseo/config.py: edit the settings
# there, not this file.
"""

# Blocks that are not settings of Odiseo, printed after a section.
AFTER_SECTION = {
    "Database": """\
# docker compose only: password of the bundled PostgreSQL (not read by Odiseo)
# POSTGRES_PASSWORD=odiseo
""",
    "Delivery / SMTP": """\

# --- Example: Gmail with an app password -----------------------------------
# Google account -> Security -> 2-Step Verification -> App passwords.
# Uncomment these lines and put in your address and the 16-character app
# password (without spaces). Never commit the real .env.
# SMTP_HOST=smtp.gmail.com
# SMTP_PORT=587
# SMTP_USE_TLS=true
# SMTP_USER=you@gmail.com
# SMTP_PASSWORD=your-16-char-app-password
# SMTP_FROM_EMAIL=you@gmail.com
# SMTP_FROM_NAME=Odiseo
""",
}
NOT_SETTINGS = frozenset({"POSTGRES_PASSWORD"})  # named in .env.example, read by compose


@dataclass(frozen=True, kw_only=True)
class Variable:
    """One environment variable as the documentation shows it."""

    name: str
    help: str
    section: str
    commands: tuple[str, ...]
    default: str | None  # None: unset by default
    example: str | None


def variables() -> list[Variable]:
    """Every setting, in the order of the Settings class."""
    found = []
    for field_name, field in Settings.model_fields.items():
        extra = field.json_schema_extra
        if not isinstance(extra, dict) or not field.description:
            raise TypeError(f"Settings.{field_name} is not made with setting(...)")
        found.append(
            Variable(
                name=field_name.upper(),
                help=field.description,
                section=str(extra["section"]),
                commands=tuple(extra["commands"]),  # type: ignore[arg-type]
                default=shown(field.default),
                example=extra.get("example"),  # type: ignore[arg-type]
            )
        )
    return found


def shown(value: Any) -> str | None:
    """A default as it would be written in `.env`."""
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, Path) and not value.is_absolute():
        return f"./{value}"
    return str(value)


def env_example() -> str:
    """The text of `.env.example`."""
    by_section = {name: [v for v in variables() if v.section == name] for name in SECTIONS}
    parts = [HEADER]
    for section, listed in by_section.items():
        heading = f" {section} ---"
        parts.append("\n# " + "-" * (76 - len(heading)) + heading + "\n")
        for variable in listed:
            parts.append(_entry(variable))
        parts.append(AFTER_SECTION.get(section, ""))
    return "".join(parts)


def _entry(variable: Variable) -> str:
    text = variable.help
    if variable.example is not None and "default" not in text and "unset" not in text:
        text += f" (default: {variable.default or 'unset'})"
    value = variable.example if variable.example is not None else variable.default or ""
    comment = textwrap.fill(
        text, width=79, initial_indent="# ", subsequent_indent="# ", break_on_hyphens=False
    )
    return f"{comment}\n# {variable.name}={value}\n"


def command_help(command: str) -> str:
    """The environment part of `odiseo COMMAND --help`: the variables that command reads."""
    listed = [v for v in variables() if command in v.commands]
    width = max(len(v.name) for v in listed)
    lines = []
    for variable in listed:
        text = variable.help
        if variable.default is not None and "default" not in text:
            text += f" (default {variable.default})"
        lines.append(
            textwrap.fill(
                text,
                width=100,
                initial_indent=f"  {variable.name.ljust(width)}  ",
                subsequent_indent=" " * (width + 4),
                break_on_hyphens=False,
            )
        )
    return "environment variables (also read from ./.env):\n" + "\n".join(lines)


if __name__ == "__main__":
    sys.stdout.write(env_example())
