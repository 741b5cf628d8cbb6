"""How each hosted relay's report reads, item by item (the signatures are in
tests/api/test_relay_reports.py, through the app)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from odiseo.domain.bounces import NoticeKind
from odiseo.errors import InvalidReport
from odiseo.inbound.relays.postmark import read_postmark
from odiseo.inbound.relays.sendgrid import read_sendgrid
from odiseo.inbound.relays.ses import read_ses
from tests.support import relays

TO = "ana@example.com"


@pytest.mark.parametrize(
    ("kind", "expected", "suppress"),
    [
        ("HardBounce", NoticeKind.BOUNCED, True),
        ("BadEmailAddress", NoticeKind.BOUNCED, True),
        ("SoftBounce", NoticeKind.BOUNCED, False),
        ("Blocked", NoticeKind.BOUNCED, False),
        ("Transient", NoticeKind.DELAYED, False),
        ("DnsError", NoticeKind.DELAYED, False),
        ("SpamNotification", NoticeKind.COMPLAINED, True),
    ],
)
def test_postmark_types(kind: str, expected: NoticeKind, suppress: bool) -> None:
    record = relays.postmark_bounce(recipient=TO, postmark_id="p-1", kind=kind)
    (item,) = read_postmark(json.dumps(record).encode())
    (notice,) = item.returned.notices
    assert (notice.kind, notice.suppress, notice.recipient) == (expected, suppress, TO)
    assert item.returned.relay_message_id == "p-1"


@pytest.mark.parametrize("kind", ["AutoResponder", "Subscribe", "ManuallyDeactivated"])
def test_postmark_records_that_report_nothing_that_came_back(kind: str) -> None:
    record = relays.postmark_bounce(recipient=TO, postmark_id="p-1", kind=kind)
    assert read_postmark(json.dumps(record).encode()) == []


def test_postmark_spam_complaint_and_bounce_content() -> None:
    record = {"RecordType": "SpamComplaint", "Email": TO, "MessageID": "p-2"}
    (item,) = read_postmark(json.dumps(record).encode())
    assert item.returned.notices[0].kind is NoticeKind.COMPLAINED
    content = "Message-ID: <abc@odiseo.test>\r\nSubject: x\r\n\r\nbody"
    bounce = {**relays.postmark_bounce(recipient=TO, postmark_id="p-3"), "Content": content}
    (item,) = read_postmark(json.dumps(bounce).encode())
    assert item.returned.rfc_message_id == "<abc@odiseo.test>"


def ses(event: dict[str, Any]) -> list[Any]:
    return read_ses(json.dumps(event))


def test_ses_permanent_without_a_reply_follows_ses_and_transient_never_suppresses() -> None:
    event = relays.ses_bounce(recipient=TO, ses_id="s-1", rfc_message_id="<m@x>")
    del event["bounce"]["bouncedRecipients"][0]["status"]
    del event["bounce"]["bouncedRecipients"][0]["diagnosticCode"]
    (item,) = ses(event)
    assert item.returned.notices[0].suppress  # SES: Permanent means drop the address
    assert item.returned.relay_message_id == "s-1"
    assert item.returned.rfc_message_id == "<m@x>"
    transient = relays.ses_bounce(
        recipient=TO, ses_id="s-1", rfc_message_id="<m@x>", bounce_type="Transient"
    )
    (item,) = ses(transient)
    assert item.returned.notices[0].kind is NoticeKind.BOUNCED
    assert not item.returned.notices[0].suppress


def test_ses_not_spam_deliveries_and_opens_report_nothing() -> None:
    complaint = relays.ses_complaint(recipient=TO, ses_id="s-1", rfc_message_id="<m@x>")
    complaint["complaint"]["complaintFeedbackType"] = "not-spam"
    assert ses(complaint) == []
    assert ses({"notificationType": "Delivery", "mail": {}}) == []
    assert ses({"eventType": "Open", "mail": {}}) == []


@pytest.mark.parametrize(
    "event",
    [
        {"notificationType": "Bounce"},
        {"notificationType": "Bounce", "bounce": {"bouncedRecipients": "x"}},
        {"notificationType": "Complaint", "complaint": {"complainedRecipients": [1]}},
    ],
)
def test_ses_malformed(event: dict[str, Any]) -> None:
    with pytest.raises(InvalidReport):
        ses(event)


def test_sendgrid_blocked_bounces_without_suppressing_and_ids() -> None:
    events = relays.sendgrid_events(recipient=TO, rfc_message_id="m@x")
    events[1]["type"] = "blocked"
    items = read_sendgrid(json.dumps(events).encode())
    assert [i.returned.notices[0].kind for i in items] == [
        NoticeKind.BOUNCED,
        NoticeKind.DELAYED,
        NoticeKind.COMPLAINED,
    ]
    assert not items[0].returned.notices[0].suppress
    assert items[0].returned.relay_message_id == "xXLCQUfdSi6zDJEJT7M1Ow"
    assert items[0].returned.rfc_message_id == "<m@x>"
    for bad in (b"{}", b"[1]", b"not json"):
        with pytest.raises(InvalidReport):
            read_sendgrid(bad)
