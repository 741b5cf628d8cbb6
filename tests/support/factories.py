"""Build domain values for tests."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from odiseo.domain.models import NewEmail, OutgoingEmail


def outgoing(**changes: Any) -> OutgoingEmail:
    """A message to write, with a fixed id (so its boundaries are known) and `changes`."""
    fields: dict[str, Any] = {
        "message_id": "5a377f3a-abeb-4e60-a59e-2a706e6021f8",
        "rfc_message_id": "<5a377f3a-abeb-4e60-a59e-2a706e6021f8@odiseo.io>",
        "from_email": "noreply@odiseo.io",
        "from_name": "Odiseo",
        "to": ("user@example.com",),
        "subject": "Hello",
        "html": "<p>Hi</p>",
        "text": None,
        **changes,
    }
    return OutgoingEmail(**fields)


def new_email(
    *,
    to: str | tuple[str, ...] = "user@example.com",
    subject: str = "Hello",
    priority: int = 5,
    max_retries: int = 3,
    send_at: datetime | None = None,
    client_message_id: str | None = None,
    payload_hash: str | None = None,
    tags: tuple[str, ...] = (),
    **email_fields: Any,
) -> NewEmail:
    message_id = str(uuid.uuid4())
    fields: dict[str, Any] = {
        "message_id": message_id,
        "rfc_message_id": f"<{message_id}@odiseo.test>",
        "from_email": "noreply@odiseo.test",
        "from_name": "Odiseo",
        "to": (to,) if isinstance(to, str) else to,
        "subject": subject,
        "html": "<p>Hi</p>",
        "text": None,
    }
    fields.update(email_fields)
    return NewEmail(
        email=OutgoingEmail(**fields),
        priority=priority,
        max_retries=max_retries,
        send_at=send_at,
        client_message_id=client_message_id,
        payload_hash=payload_hash,
        tags=tags,
    )
