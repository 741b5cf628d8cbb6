"""Properties of every message the writer produces, over generated input (hypothesis).

For any value the API admits — arbitrary Unicode, very long and unbreakable text,
quotes, literal encoded-words — the message is well formed, free of defects for
the standard library's strict parser, carries exactly the headers asked for, gives
every field back as it was posted, and keeps a valid DKIM signature through a relay
that re-folds long lines.
"""

from __future__ import annotations

import re
import string
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from email.utils import unquote

from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from odiseo.domain.models import Attachment, OutgoingEmail
from odiseo.errors import InvalidEmail
from odiseo.mime import build_message, value_problem
from odiseo.mime.headers import _BLOCK, _WORDS, _fold, _lines, display_name, unstructured
from tests.unit.wire import assert_well_formed, dkim_keys, dkim_verifies, phrase_of, relay, strict

DATE = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)
# How many examples: the profile's (tests/conftest.py; `--hypothesis-profile=thorough`).
SETTINGS = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Everything but surrogates, and the controls the API refuses (TAB is allowed).
_ADMITTED = st.characters(
    blacklist_categories=("Cs",),
    blacklist_characters=[chr(c) for c in [*range(0x09), *range(0x0A, 0x20), *range(0x7F, 0xA0)]]
    + ["\u2028", "\u2029"],
)
_TRICKY = st.sampled_from(
    [" ", "  ", "\t", "=?", "?=", "=?utf-8?q?caf=C3=A9?=", '"', "\\", "_", ";", ",", ":",
     "<", ">", "@", "(", ")", "%", "'", "*", "é", "中", "😀", "\u0301", "\ufeff", "\u200b",
     "x" * 80, "https://example.com/" + "a" * 120, "k=v;" * 30]
)  # fmt: skip


def header_text(*, min_size: int = 0, max_size: int = 300) -> st.SearchStrategy[str]:
    """Values for a header-bound field: mixtures of ordinary, tricky and long pieces."""
    pieces = st.one_of(st.text(_ADMITTED, max_size=40), _TRICKY, st.text(string.printable[:94]))
    return (
        st.lists(pieces, max_size=12)
        .map("".join)
        .filter(lambda v: min_size <= len(v) <= max_size and value_problem(v) is None)
    )


_NAMES = st.from_regex(r"X-[A-Za-z0-9][A-Za-z0-9-]{0,20}", fullmatch=True)
# Field names ignore case: X-T and x-t in one request are refused (test_mime_edge_cases).
_distinct_headers = st.dictionaries(_NAMES, header_text(max_size=998), max_size=4).filter(
    lambda headers: len({name.lower() for name in headers}) == len(headers)
)
_ADDRESSES = st.sampled_from(
    ["a@example.com", "first.last+tag@sub.example.org", "o'brien@example.ie",
     "x@xn--bcher-kva.example", "very.long.local.part.of.an.address@" + "d" * 60 + ".example"]
)  # fmt: skip
_BODIES = st.one_of(
    st.text(max_size=300),
    st.text(st.characters(blacklist_categories=("Cs",)), max_size=3000),
    st.sampled_from(["a" * 2000, "line\r\nline\rline\n", "trailing  \n", "中文" * 600]),
)
_CID = r"[a-z0-9]{1,9}(\.[a-z0-9]{1,9})?(@[a-z]{1,9}\.[a-z]{2,4})?"
_ATTACHMENTS = st.builds(
    Attachment,
    filename=header_text(min_size=1, max_size=255),
    content_type=st.sampled_from(["application/pdf", "text/plain", "image/png", "text/csv"]),
    data=st.one_of(st.binary(max_size=500), st.text(max_size=200).map(str.encode)),
    content_id=st.one_of(
        st.none(),
        st.from_regex(r"[a-z0-9]{1,9}(\.[a-z0-9]{1,9})?(@[a-z]{1,9}\.[a-z]{2,4})?", fullmatch=True),
    ),
)


@st.composite
def emails(draw: st.DrawFn) -> OutgoingEmail:
    html = draw(st.one_of(st.none(), _BODIES))
    text = draw(_BODIES) if html is None else draw(st.one_of(st.none(), _BODIES))
    return OutgoingEmail(
        message_id="0f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0",
        rfc_message_id="<0f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0@odiseo.io>",
        from_email=draw(_ADDRESSES),
        from_name=draw(st.one_of(st.none(), header_text(min_size=1, max_size=255))),
        to=tuple(draw(st.lists(_ADDRESSES, min_size=1, max_size=20))),
        cc=tuple(draw(st.lists(_ADDRESSES, max_size=3))),
        reply_to=tuple(draw(st.lists(_ADDRESSES, max_size=2))),
        subject=draw(header_text(min_size=1, max_size=998)),
        html=html,
        text=text,
        headers=tuple(draw(_distinct_headers).items()),
        attachments=tuple(draw(st.lists(_ATTACHMENTS, max_size=3))),
    )


def _lf(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


@SETTINGS
@given(emails())
def test_every_message_is_well_formed_and_decodes_back(email: OutgoingEmail) -> None:
    note(repr(email))
    raw = build_message(email, date=DATE)
    assert_well_formed(raw)
    parsed = strict(raw)
    expected = ["From", "To", "Subject", "Date", "Message-ID", "MIME-Version", "Content-Type"]
    expected += ["Cc"] * bool(email.cc) + ["Reply-To"] * bool(email.reply_to)
    expected += [name for name, _ in email.headers]
    if parsed.get_content_maintype() != "multipart":
        expected.append("Content-Transfer-Encoding")
    assert sorted(parsed.keys()) == sorted(expected)
    assert str(parsed["Subject"]) == email.subject
    (sender,) = parsed["From"].addresses
    assert sender.addr_spec == email.from_email
    assert phrase_of(raw, "From") == display_name(email.from_name or "")
    assert [a.addr_spec for a in parsed["To"].addresses] == list(email.to)
    for name, value in email.headers:
        assert str(parsed[name]) == value
    _check_bodies(parsed, email)


def _check_bodies(parsed: EmailMessage, email: OutgoingEmail) -> None:
    plain = parsed.get_body(("plain",))
    assert plain is not None
    if email.text is not None:
        assert _lf(plain.get_content()) == _lf(email.text)
    if email.html is not None:
        html = parsed.get_body(("html",))
        assert html is not None and _lf(html.get_content()) == _lf(email.html)
    files = [p for p in parsed.walk() if p.get_filename() is not None]
    found = sorted(
        (p.get_filename() or "", p.get_payload(decode=True), str(p["Content-ID"] or ""))
        for p in files
    )
    # get_filename() strips the name, and drops enclosing <> or "" even from a value
    # encoded by RFC 2231: what this parser reads back from a name written exactly.
    posted = sorted(
        (unquote(a.filename).strip(), a.data, f"<{a.content_id}>" if a.content_id else "")
        for a in email.attachments
    )
    assert found == posted


@SETTINGS
@given(emails())
def test_a_dkim_signature_survives_a_relay_that_refolds_long_lines(email: OutgoingEmail) -> None:
    signer, _ = dkim_keys()
    signed = signer.sign(build_message(email, date=DATE))
    assert relay(signed) == signed  # nothing for the relay to break
    assert dkim_verifies(relay(signed))


@SETTINGS
@given(st.text(st.characters(blacklist_categories=("Cs",)), max_size=200), st.integers(0, 90))
def test_the_header_writer_never_emits_a_break_from_a_value(value: str, pad: int) -> None:
    """Whatever it is given, bypassing the API: refused, or one well-formed field."""
    value = "x" * pad + value
    try:
        field = unstructured("Subject", value)
    except InvalidEmail:
        assert value_problem(value) is not None
        return
    assert value_problem(value) is None
    lines = field[:-2].split(b"\r\n")
    assert lines[0].startswith(b"Subject:")
    assert all(line[:1] in (b" ", b"\t") and line.strip() for line in lines[1:])
    raw = field + b"\r\nbody\r\n"
    assert str(strict(raw)["Subject"]) == value


_FAST = st.from_regex(r"[!-~]{1,20}(?: [!-~]{1,20}){0,4}", fullmatch=True).filter(
    lambda v: "=?" not in v and len(v) <= 60
)


@SETTINGS
@given(_FAST)
def test_the_fast_path_writes_what_the_general_path_and_the_stdlib_write(value: str) -> None:
    fast = unstructured("Subject", value)
    general = _lines(_fold("Subject:", _WORDS.findall(value)) or [])
    assert fast == general
    assert fast == policy.SMTP.fold_binary("Subject", value)


# check_block's pattern as first written, without possessive quantifiers: the reference
# the faster one must agree with on every block.
_PLAIN_BLOCK = re.compile(rb"(?:[!-9;-~]{1,76}:(?:[ \t]*[!-~])*\r\n(?:(?:[ \t]+[!-~]+)+\r\n)*)+")
_BLOCK_PIECES = st.sampled_from(
    [b"Subject", b"X-A", b":", b": ", b" ", b"\t", b"  ", b"word", b"\r\n", b"\r\n ",
     b"\r\n\t", b"\r", b"\n", b"\x7f", b"\x00", b"\xc3\xa9", b"=?", b"a" * 77, b"~!"]
)  # fmt: skip
_FIELD = st.lists(_BLOCK_PIECES, max_size=12).map(lambda p: b"Name:" + b"".join(p) + b"\r\n")


_BLOCKS = st.one_of(
    st.lists(_BLOCK_PIECES, max_size=20).map(b"".join), st.lists(_FIELD).map(b"".join)
)


@SETTINGS
@given(_BLOCKS)
def test_the_header_block_check_accepts_what_the_plain_pattern_accepts(block: bytes) -> None:
    expected = _PLAIN_BLOCK.fullmatch(block) is not None
    assert (_BLOCK.fullmatch(block) is not None) == expected


def test_the_header_block_check_on_fixed_blocks() -> None:
    for block, good in [
        (b"To: a@b.c\r\n", True),
        (b"To: a@b.c \r\n", False),  # trailing blank
        (b"To:\r\n", True),
        (b"Subject: one\r\n two\r\n\tthree\r\n", True),
        (b"Subject: one\r\n \r\n", False),  # a continuation line with no text
        (b"Subject: one\n", False),
        (b"Subject one\r\n", False),
        (b"", False),
    ]:
        assert (_BLOCK.fullmatch(block) is not None) is good, block
        assert (_PLAIN_BLOCK.fullmatch(block) is not None) is good, block
