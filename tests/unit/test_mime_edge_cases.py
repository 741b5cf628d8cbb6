"""The message writer on inputs at the edge of what it admits: values that look like
encoded-words, container media types, headers RFC 5322 parses as dates or addresses,
long names over spaced non-ASCII values. Each is refused, or written so the strict parser
reads back what was given.

Claims are quoted from the README ("What goes on the wire") and the module docstrings
of odiseo.mime.headers and odiseo.mime.message.
"""

from __future__ import annotations

from datetime import UTC, datetime
from email import message_from_bytes, policy
from functools import partial

import pytest

from odiseo.domain.models import Attachment
from odiseo.errors import InvalidEmail
from odiseo.mime import build_message, check_email
from odiseo.mime.headers import unstructured
from tests.support.factories import outgoing
from tests.unit.wire import assert_well_formed, strict

DATE = datetime(2026, 12, 1, tzinfo=UTC)


_email = partial(outgoing, html=None, text="Hi")


@pytest.mark.parametrize(
    "address", ["=?utf-8?b?QUJD?=@example.com", "=?utf-8?q?ceo=40bank.example?=@example.com"]
)
def test_an_address_that_looks_like_an_encoded_word_decodes_back(address: str) -> None:
    """README: every field "gives back" what was posted and the strict parser finds no
    defect. A dot-atom local part may hold `=?…?=` (the API's email-validator accepts it);
    written raw in To, the reference parser reports "missing trailing whitespace after
    encoded-word" and reads `ABC@example.com` (or `ceo@bank.example@example.com`): readers
    that decode it show an address the sender did not write."""
    email = _email(to=(address,), reply_to=(address,))
    try:
        check_email(email)
    except InvalidEmail:
        return  # refused (with a 422 at the API): what the claim allows
    raw = build_message(email, date=DATE)
    parsed = message_from_bytes(raw, policy=policy.default)
    assert [a.addr_spec for a in parsed["To"].addresses] == [address]
    assert [a.addr_spec for a in parsed["Reply-To"].addresses] == [address]
    strict(raw)


def test_a_content_id_that_looks_like_an_encoded_word_decodes_back() -> None:
    """The same class for Content-ID: `=?utf-8?q?logo?=` is a dot-atom (API and writer admit
    it), written raw; the reference parser reads the field back as `<logo>`, so a reader
    that decodes it no longer matches the HTML's `cid:=?utf-8?q?logo?=`."""
    content_id = "=?utf-8?q?logo?="
    image = Attachment(filename="a.png", content_type="image/png", data=b"x", content_id=content_id)
    email = _email(html=f'<img src="cid:{content_id}">', text=None, attachments=(image,))
    try:
        check_email(email)
    except InvalidEmail:
        return  # refused (with a 422 at the API): what the claim allows
    parsed = strict(build_message(email, date=DATE))
    found = [str(part["Content-ID"]) for part in parsed.walk() if part["Content-ID"]]
    assert found == [f"<{content_id}>"]


@pytest.mark.parametrize("content_type", ["Multipart/mixed", "Message/rfc822", "MULTIPART/related"])
def test_an_attachment_the_writer_admits_is_well_formed(content_type: str) -> None:
    """headers.MEDIA_TYPE admits multipart/* and message/* in any case; the API refuses
    them only when given explicitly (and lower-cases before comparing), while the type it
    guesses from a file name is compared case-sensitively (see security/test_input.py,
    the container-type test). Written as a base64 leaf, such a part has no boundary / no
    header block, and the strict parser raises NoBoundaryInMultipartDefect /
    MissingHeaderBodySeparatorDefect."""
    item = Attachment(filename="report.pdf", content_type=content_type, data=b"%PDF-1.4 hello")
    email = _email(attachments=(item,))
    try:
        check_email(email)
    except InvalidEmail:
        return  # refused: what the claim allows
    strict(build_message(email, date=DATE))


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("Resent-Date", "tomorrow"),
        ("Resent-From", "Marketing team"),
        ("Resent-To", "everyone"),
        ("Resent-Cc", "équipe"),
        ("Orig-Date", "yesterday"),
    ],
)
def test_a_custom_header_the_writer_admits_parses_without_defects(name: str, value: str) -> None:
    """check_header_name reserves From, To, Date… but not their Resent-* twins nor
    Orig-Date, which RFC 5322 (and the stdlib's header registry) parse as dates and
    address lists. Written as unstructured text they carry defects under policy.strict
    (InvalidDateDefect, "addr-spec local part with no domain"), and `Resent-Cc: é` becomes
    an encoded-word where an address list is expected."""
    email = _email(headers=((name, value),))
    try:
        check_email(email)
    except InvalidEmail:
        return  # refused: what the claim allows
    raw = build_message(email, date=DATE)
    assert_well_formed(raw)
    assert str(strict(raw)[name]) == value


@pytest.mark.parametrize("length", [52, 56, 60])
def test_a_spaced_non_ascii_value_under_a_long_name_folds_within_78(length: int) -> None:
    """README: "header lines are folded to 78 characters wherever the value has a space to
    fold at". Under a name of 52+ characters the first encoded-word is given the full 75
    characters (`room > 24` in _encoded_lines, where 24 already fits any character), so the
    first line is 126-134 characters though the value has 19 spaces and shorter words fit."""
    name = "X-" + "a" * (length - 2)
    value = " ".join(["café"] * 20)
    field = unstructured(name, value)
    assert max(map(len, field.split(b"\r\n"))) <= 78, field[:160]


def test_header_names_differing_only_in_case_are_one_field_given_twice() -> None:
    """Found by the property test's long profile: {"X-T": "0", "x-t": ""} went out as two
    fields of one name."""
    email = outgoing(headers=(("X-T", "0"), ("x-t", "1")))
    with pytest.raises(InvalidEmail, match="x-t is given twice"):
        check_email(email)
    with pytest.raises(InvalidEmail, match="given twice"):
        build_message(email, date=DATE)
