"""The event types: one registry (domain/events.py), one table in the README."""

from __future__ import annotations

import re
from pathlib import Path

from odiseo.domain.events import DESCRIPTIONS, PER_RECIPIENT, EventType

README = Path(__file__).parents[2] / "README.md"


def test_the_readme_table_lists_every_type_once_with_its_recipient_rule() -> None:
    section = README.read_text().split("## Events and webhooks\n", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `([a-z.]+)` \| .+ \| (yes|) \|$", section, re.MULTILINE)
    assert [name for name, _ in rows] == [t.value for t in EventType]
    assert {name for name, per in rows if per} == {t.value for t in PER_RECIPIENT}
    assert set(DESCRIPTIONS) == set(EventType)
