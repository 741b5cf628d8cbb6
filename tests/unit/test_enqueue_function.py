"""The SQL function enqueue()'s text agrees with what it copies: the store's columns, the
request model's fields and bounds, the message writer's reserved headers."""

from __future__ import annotations

from odiseo.requests import EmailIn
from odiseo.storage import enqueue_function
from odiseo.storage.tables import INSERT_COLUMNS


def test_every_column_the_store_writes_has_a_value_in_the_function() -> None:
    statements = "\n".join(enqueue_function.statements("s", channel="c"))
    assert set(enqueue_function.ROW_VALUES) == set(INSERT_COLUMNS)
    assert f"INSERT INTO emails ({', '.join(INSERT_COLUMNS)})" in statements


def test_the_function_knows_the_request_model_and_its_bounds() -> None:
    """storage/ cannot import odiseo/requests.py (it sits above): its copies agree."""
    from odiseo import requests
    from odiseo.mime import message
    from odiseo.service import DEFAULT_PRIORITY, MAX_SUBJECT_CHARS

    assert set(enqueue_function.FIELDS) == set(EmailIn.model_fields)
    assert enqueue_function.LIMITS == {
        "default_priority": DEFAULT_PRIORITY,
        "max_recipients": requests.MAX_RECIPIENTS,
        "max_subject": MAX_SUBJECT_CHARS,
        "max_body": requests.MAX_BODY_CHARS,
        "max_attachments": requests.MAX_ATTACHMENTS,
    }
    assert enqueue_function.RESERVED_PREFIXES == message._RESERVED_PREFIXES
