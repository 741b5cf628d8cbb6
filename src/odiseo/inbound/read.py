"""One message that came back to a return path: a bounce, a complaint, or neither."""

from __future__ import annotations

from odiseo.domain.bounces import Returned
from odiseo.inbound.arf import read_arf
from odiseo.inbound.dsn import read_dsn
from odiseo.inbound.message import parse


class Unreadable(Exception):
    """A message that is no report Odiseo can read; its text says why."""


def read_returned(raw: bytes, *, message_id: str | None) -> Returned:
    """What the message `raw`, sent to the return path of `message_id` (None if not
    known from it), reports.

    Raises:
        Unreadable: no delivery status notification or complaint report, or one that
            names no failed, delayed or complaining recipient.
    """
    try:
        message = parse(raw)
        found = read_dsn(message) or read_arf(message)
    except Exception as exc:  # a parser bug must not lose the message: it is kept
        raise Unreadable(f"cannot parse: {type(exc).__name__}") from exc
    if found is None:
        kind = message.get_content_type()
        raise Unreadable(f"not a delivery status notification or complaint report ({kind})")
    notices, rfc_message_id = found
    if not notices:
        raise Unreadable("the report names no failed, delayed or complaining recipient")
    return Returned(notices=tuple(notices), message_id=message_id, rfc_message_id=rfc_message_id)
