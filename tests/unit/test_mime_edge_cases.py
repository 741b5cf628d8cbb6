"""Adversarial review of issue 11: the message writer, html_to_text and the template
subject, each test holding an input where a documented claim does not hold.

Claims are quoted from the README ("What goes on the wire") and the module docstrings
of odiseo.mime.headers, odiseo.mime.message and odiseo.mime.text.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from email import message_from_bytes, policy
from functools import partial

import pytest

from odiseo.domain.models import Attachment
from odiseo.errors import InvalidEmail
from odiseo.mime import build_message, check_email, html_to_text
from odiseo.mime.headers import unstructured
from odiseo.rendering import Renderer
from tests.support.factories import outgoing
from tests.unit.wire import assert_well_formed, strict

DATE = datetime(2026, 12, 1, tzinfo=UTC)


_email = partial(outgoing, html=None, text="Hi")


def test_html_to_text_is_linear_on_an_unclosed_tag_with_a_long_name_review() -> None:
    """text.py: "its cost is linear in the input whatever it holds". `_TOKEN` has two
    adjacent quantifiers over overlapping classes (`[A-Za-z0-9-]*` then `[^<>]*`) before a
    `>` that never comes, so the search backtracks through every split: quadratic. 40,000
    characters took 5.7 s here; a 5 MB `body` (the API's limit) would hold the worker's event
    loop (build_message runs on it, lease renewal included) for about a day. Possessive
    quantifiers (`*+`, Python 3.11) would make it linear."""
    for hostile in ("<a" + "b" * 60_000, "</p" + "-" * 60_000, "<x" + "y" * 30_000 + "<"):
        started = time.process_time()
        html_to_text(hostile)
        assert time.process_time() - started < 2, hostile[:4]


@pytest.mark.parametrize(
    "address", ["=?utf-8?b?QUJD?=@example.com", "=?utf-8?q?ceo=40bank.example?=@example.com"]
)
def test_an_address_that_looks_like_an_encoded_word_decodes_back_review(address: str) -> None:
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


def test_a_content_id_that_looks_like_an_encoded_word_decodes_back_review() -> None:
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
def test_an_attachment_the_writer_admits_is_well_formed_review(content_type: str) -> None:
    """headers.MEDIA_TYPE admits multipart/* and message/* in any case; the API refuses
    them only when given explicitly (and lower-cases before comparing), while the type it
    guesses from a file name is compared case-sensitively (see the security review
    test). Written as a base64 leaf, such a part has no boundary / no header block, and
    the strict parser raises NoBoundaryInMultipartDefect / MissingHeaderBodySeparatorDefect."""
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
def test_a_custom_header_the_writer_admits_parses_without_defects_review(
    name: str, value: str
) -> None:
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
def test_a_spaced_non_ascii_value_under_a_long_name_folds_within_78_review(length: int) -> None:
    """README: "header lines are folded to 78 characters wherever the value has a space to
    fold at". Under a name of 52+ characters the first encoded-word is given the full 75
    characters (`room > 24` in _encoded_lines, where 24 already fits any character), so the
    first line is 126-134 characters though the value has 19 spaces and shorter words fit."""
    name = "X-" + "a" * (length - 2)
    value = " ".join(["café"] * 20)
    field = unstructured(name, value)
    assert max(map(len, field.split(b"\r\n"))) <= 78, field[:160]


def test_table_cells_do_not_run_together_review() -> None:
    """html_to_text should give "sensible text": adjacent <td>/<th> cells (layout tables
    are everywhere in transactional mail) are glued into one word — "Total:$10", "AB"."""
    html = "<table><tr><td>Total:</td><td>$10</td></tr><tr><th>A</th><th>B</th></tr></table>"
    text = html_to_text(html)
    assert "Total:$10" not in text and "AB" not in text, text


def test_a_template_subject_keeps_its_non_breaking_and_ideographic_spaces_review() -> None:
    """Renderer._subject folds "the template's own line breaks" with `source.split()`, which
    also splits at NO-BREAK SPACE, U+3000 and every other Unicode space and joins with an
    ASCII space: a stored subject `Precio:\\xa0100\\xa0€` (admitted by the API) is sent
    as `Precio: 100 €`, and runs of spaces collapse."""
    subject = "Precio:\u00a0100\u00a0€ — 東京\u3000駅"
    rendered = Renderer(None).render_source(
        "t", subject=subject, html="<p>x</p>", text=None, variables={}
    )
    assert rendered.subject == subject
