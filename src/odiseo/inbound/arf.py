"""Complaints in the Abuse Reporting Format (RFC 5965): a recipient marked it as spam.

An ARF report is a `multipart/report; report-type=feedback-report`: a human-readable
part, a `message/feedback-report` part (`Feedback-Type`, `User-Agent`, `Version`,
`Original-Rcpt-To`, `Original-Mail-From`, `Arrival-Date`, `Source-IP` …) and the
reported message or its headers. Mailbox providers often redact the recipient; then
the message it is about names it (see OutcomeStore.record_returned).
"""

from __future__ import annotations

from email.message import Message
from email.utils import getaddresses

from odiseo.domain.bounces import Notice, NoticeKind
from odiseo.inbound.message import (
    field,
    field_blocks,
    message_id_of,
    quoted_headers,
    report_part,
    typed_address,
)

_KEPT = ("Feedback-Type", "User-Agent", "Arrival-Date", "Source-IP", "Reported-Domain")


def read_arf(message: Message) -> tuple[list[Notice], str | None] | None:
    """The complaint of an ARF report and the Message-ID it quotes; None if `message`
    is no ARF report."""
    part = report_part(message, "feedback-report", "message/feedback-report")
    if part is None:
        return None
    blocks = field_blocks(part)
    if not blocks:
        return None
    report = blocks[0]
    feedback = (field(report, "Feedback-Type") or "abuse").lower()
    if feedback not in ("abuse", "fraud", "virus", "other"):  # not-spam, auth-failure: no
        return [], message_id_of(quoted_headers(message))
    returned = quoted_headers(message)
    recipient = typed_address(field(report, "Original-Rcpt-To"))
    if recipient is None and returned is not None:
        recipient = _single_address(field(returned, "To"))
    detail = {
        name.lower().replace("-", "_"): value
        for name in _KEPT
        if (value := field(report, name)) is not None
    }
    notice = Notice(
        kind=NoticeKind.COMPLAINED,
        recipient=recipient,
        source="arf",
        suppress=True,
        detail=detail,
    )
    return [notice], message_id_of(returned)


def _single_address(value: str | None) -> str | None:
    """One plain address from a To field, if it holds exactly one."""
    if value is None:
        return None
    found = [address for _, address in getaddresses([value]) if "@" in address]
    return found[0] if len(found) == 1 else None
