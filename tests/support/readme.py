"""Code blocks of the README, for the tests that run them."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"
_BLOCK = re.compile(r"^```(\w+)\n(.*?)^```", re.M | re.S)


def readme_block(language: str, containing: str) -> str:
    """The one README code block in `language` that contains `containing`."""
    found = [
        body
        for lang, body in _BLOCK.findall(README.read_text(encoding="utf-8"))
        if lang == language and containing in body
    ]
    assert len(found) == 1, f"{len(found)} {language} blocks of the README contain {containing!r}"
    return found[0]
