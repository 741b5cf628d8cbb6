"""Delivery status notifications (RFC 3464): which recipients failed or are delayed.

A DSN is a `multipart/report; report-type=delivery-status` whose
`message/delivery-status` part holds one block of fields about the message, then one
block per recipient (`Final-Recipient`, `Original-Recipient`, `Action`, `Status`,
`Diagnostic-Code`, `Remote-MTA`), usually followed by the original message or its
headers. Postfix, Exim, Exchange/Outlook and Gmail all send this form.
"""

from __future__ import annotations

from email.message import Message

from odiseo.domain.bounces import Notice, NoticeKind, returned_bad_address
from odiseo.inbound.message import (
    field,
    field_blocks,
    message_id_of,
    quoted_headers,
    report_part,
    typed_address,
)

_ACTIONS = {"failed": NoticeKind.BOUNCED, "delayed": NoticeKind.DELAYED}


def read_dsn(message: Message) -> tuple[list[Notice], str | None] | None:
    """The failed and delayed recipients of a DSN and the Message-ID it quotes; None
    if `message` is no DSN. Delivered, relayed and expanded recipients give no notice."""
    part = report_part(message, "delivery-status", "message/delivery-status")
    if part is None:
        return None
    blocks = field_blocks(part)
    if not blocks:
        return None
    about, recipients = blocks[0], blocks[1:]
    if field(about, "Final-Recipient") is not None:  # no per-message block was written
        about, recipients = Message(), blocks
    notices = [n for n in (_notice(b, about) for b in recipients) if n is not None]
    # Gmail names the original in the per-message block too (X-Original-Message-ID).
    quoted = message_id_of(quoted_headers(message)) or message_id_of(about)
    return notices, quoted


def _notice(block: Message, about: Message) -> Notice | None:
    recipient = typed_address(field(block, "Original-Recipient")) or typed_address(
        field(block, "Final-Recipient")
    )
    status = field(block, "Status")
    kind = _kind(field(block, "Action"), status)
    if recipient is None or kind is None:
        return None
    diagnostic = field(block, "Diagnostic-Code")
    detail = {
        name.lower().replace("-", "_"): value
        for name in ("Action", "Remote-MTA", "Reporting-MTA", "Will-Retry-Until")
        if (value := field(block, name) or field(about, name)) is not None
    }
    return Notice(
        kind=kind,
        recipient=recipient,
        source="dsn",
        status=status,
        diagnostic=diagnostic,
        suppress=kind is NoticeKind.BOUNCED and returned_bad_address(status, diagnostic),
        detail=detail,
    )


def _kind(action: str | None, status: str | None) -> NoticeKind | None:
    """The action says; without one, the status class does (5 failed, 4 delayed)."""
    if action is not None:
        return _ACTIONS.get(action.split()[0].lower())
    if status and status[0] == "5":
        return NoticeKind.BOUNCED
    if status and status[0] == "4":
        return NoticeKind.DELAYED
    return None
