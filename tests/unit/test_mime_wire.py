"""The message writer's findings from the Postfix / Mail::DKIM / SpamAssassin trial (issue 11).

Each test holds the input that went wrong; the properties over generated input are in
test_mime_properties.py.
"""

from __future__ import annotations

import re
import sys
import unicodedata
from datetime import UTC, datetime
from email import message_from_bytes, policy

import pytest

from odiseo.domain.models import Attachment
from odiseo.errors import InvalidEmail
from odiseo.mime import build_message, value_problem
from odiseo.mime.headers import parameterised, unstructured
from tests.support.factories import outgoing
from tests.unit.wire import assert_well_formed, phrase_of, strict

DATE = datetime(2026, 12, 1, tzinfo=UTC)
_ENCODED_WORD = re.compile(rb"=\?[^?\s]+\?[bBqQ]\?[^?\s]*\?=")


_email = outgoing


def _lines(raw: bytes) -> list[bytes]:
    return raw.split(b"\r\n")


def _code_points() -> list[str]:
    """Every code point up to U+33FF and from U+FE00 to U+FFFF, where controls, separators
    and format characters live, one in 7 elsewhere in the Basic Multilingual Plane and one
    in 61 beyond it: every general category, surrogates excepted."""
    points = [*range(0x3400), *range(0x3400, 0xD800, 7), *range(0xE000, 0xFE00, 7)]
    points += [*range(0xFE00, 0x10000), *range(0x10000, sys.maxunicode + 1, 61)]
    return [chr(p) for p in points]


def test_no_code_point_in_a_value_becomes_a_line_break_in_the_header() -> None:
    """A1: whatever the writer is given, bypassing the API, it refuses the value or writes
    one field that decodes back to it; never a break that came from the value."""
    categories = set()
    for char in _code_points():
        value = "x" * 70 + char + "From : CEO <ceo@bank.example>"
        try:
            field = unstructured("Subject", value)
        except InvalidEmail:
            assert value_problem(value) is not None, hex(ord(char))
            continue
        categories.add(unicodedata.category(char))
        assert b"\r\nFrom" not in field and field.count(b"\r\n") == len(_lines(field)) - 1
        for line in _lines(field)[1:-1]:
            assert line[:1] in (b" ", b"\t") and re.fullmatch(rb"[\t -~]+", line), line
        if not char.isascii() or char in "=?":
            continue  # decoding every field is the property tests' job; this is the sweep
        assert str(strict(field + b"\r\nx")["Subject"]) == value
    assert {"Lu", "Ll", "Mn", "Nd", "Zs", "Cf", "Co", "Cn", "So", "Sm"} <= categories


@pytest.mark.parametrize("char", ["\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028"])
def test_every_header_bound_field_refuses_line_breaking_controls(char: str) -> None:
    value = "x" * 70 + char + "Bcc : victim@example.com"
    attachment = Attachment(filename=value, content_type="text/plain", data=b"x")
    for email in (
        _email(subject=value),
        _email(from_name=value),
        _email(headers=(("X-A", value),)),
        _email(attachments=(attachment,)),
    ):
        with pytest.raises(InvalidEmail, match="control characters"):
            build_message(email, date=DATE)


def test_a_header_name_with_a_final_newline_is_refused() -> None:
    """A2: `$` matched before a final LF, so `X-A\\n` became a header name."""
    for name in ("X-A\n", "X-A\r\n", "X A", "X-A:", "", "X" * 77, "Content-Disposition"):
        with pytest.raises(InvalidEmail, match="headers"):
            build_message(_email(headers=((name, "v"),)), date=DATE)


def test_no_line_passes_998_octets() -> None:
    """A3: a 998-character subject without spaces, a 106-CJK-character file name."""
    name = "報" * 106 + ".pdf"
    raw = build_message(
        _email(
            subject="x" * 998,
            attachments=(Attachment(filename=name, content_type="application/pdf", data=b"%"),),
        ),
        date=DATE,
    )
    assert_well_formed(raw)
    assert max(map(len, _lines(raw))) <= 78
    assert re.search(rb"filename\*0\*=utf-8''", raw) and re.search(rb"filename\*1\*=", raw)
    parsed = strict(raw)
    assert str(parsed["Subject"]) == "x" * 998
    (attachment,) = list(parsed.iter_attachments())
    assert attachment.get_filename() == name
    assert attachment.get_param("name") == name


def test_encoded_words_are_at_most_75_characters() -> None:
    """A4: long non-ASCII headers folded into 76-character words."""
    raw = build_message(
        _email(
            subject="Ñandú résumé " * 30, from_name="Équipe " * 30, headers=(("X-N", "中" * 200),)
        ),
        date=DATE,
    )
    words = _ENCODED_WORD.findall(raw)
    assert len(words) > 20 and max(map(len, words)) <= 75
    assert max(map(len, _lines(raw))) <= 78


def test_an_unbreakable_ascii_value_starts_on_the_header_line() -> None:
    """A5: `Name: ` + CRLF + ` value` unfolded with a leading space and left a line
    ending in whitespace."""
    url = "<https://example.com/unsubscribe?" + "token=" + "a" * 150 + ">"
    listing = ";".join(f"k{i}=v{i}" for i in range(40))
    raw = build_message(_email(headers=(("List-Unsubscribe", url), ("X-List", listing))), date=DATE)
    assert f"List-Unsubscribe: {url}\r\n".encode() in raw
    assert f"X-List: {listing}\r\n".encode() in raw
    assert not re.search(rb"[ \t]\r\n", raw.split(b"\r\n\r\n")[0] + b"\r\n")
    parsed = message_from_bytes(raw, policy=policy.default)
    assert str(parsed["List-Unsubscribe"]) == url and str(parsed["X-List"]) == listing


def test_a_literal_encoded_word_is_encoded_so_readers_show_it_as_written() -> None:
    """A6: `=?utf-8?q?caf=C3=A9?=` was sent as-is and shown as `café`."""
    literal = "=?utf-8?q?caf=C3=A9?="
    raw = build_message(_email(subject=literal, from_name=literal), date=DATE)
    assert literal.encode() not in raw
    parsed = strict(raw)
    assert str(parsed["Subject"]) == literal
    assert phrase_of(raw, "From") == literal


def test_text_with_long_lines_is_quoted_printable_not_base64() -> None:
    """A7: base64 text parts score MIME_BASE64_TEXT in SpamAssassin."""
    text = "word " * 400 + "\n" + "y" * 1500 + "\n"
    raw = build_message(_email(text=text, html="<p>" + "z" * 2000 + "</p>"), date=DATE)
    assert b"Content-Transfer-Encoding: base64" not in raw
    assert raw.count(b"Content-Transfer-Encoding: quoted-printable") == 2
    parsed = strict(raw)
    plain = parsed.get_body(("plain",))
    assert plain is not None and plain.get_content().replace("\r\n", "\n") == text


def test_a_utf8_text_attachment_says_its_charset() -> None:
    """A8: `text/plain; name*=…` only, so readers took UTF-8 text for US-ASCII."""
    data = "Olá, señor — 日本語\n".encode()
    raw = build_message(
        _email(
            attachments=(Attachment(filename="notes.txt", content_type="text/plain", data=data),)
        ),
        date=DATE,
    )
    (attachment,) = list(strict(raw).iter_attachments())
    assert attachment.get_content_charset() == "utf-8"
    assert attachment.get_content() == data.decode()


def test_headers_with_a_fold_point_stay_within_78_characters() -> None:
    """A9: the multipart Content-Type with its boundary, a long From display name."""
    raw = build_message(
        _email(
            from_name="The Quarterly Numbers Department of a Very Large Company " * 4,
            attachments=(Attachment(filename="a.pdf", content_type="application/pdf", data=b"%"),),
        ),
        date=DATE,
    )
    assert max(map(len, _lines(raw))) <= 78
    assert strict(raw).get_content_type() == "multipart/mixed"


def test_parameters_use_rfc2231_only_where_quoting_cannot_carry_the_value() -> None:
    assert parameterised("Content-Type: a/b", [("name", "a b.pdf")]) == (
        b'Content-Type: a/b; name="a b.pdf"\r\n'
    )
    assert parameterised("Content-Type: a/b", [("name", 'a"b.pdf')]) == (
        b"Content-Type: a/b; name*=utf-8''a%22b.pdf\r\n"
    )
