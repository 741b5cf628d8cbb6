from __future__ import annotations

from datetime import UTC, datetime
from email import message_from_bytes, policy
from functools import partial

from odiseo.mime import build_message, html_to_text
from tests.support.factories import outgoing

DATE = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)


_email = partial(
    outgoing,
    subject="Hello World",
    html="<h1>Welcome!</h1><p>Read <a href='https://x.example/a'>this</a>.</p>",
)


def _parse(raw: bytes):  # type: ignore[no-untyped-def]
    return message_from_bytes(raw, policy=policy.default)


def test_alternative_with_derived_text_and_fixed_headers() -> None:
    parsed = _parse(build_message(_email(), date=DATE))
    assert parsed.get_content_type() == "multipart/alternative"
    assert parsed["From"] == "Odiseo <noreply@odiseo.io>"
    assert parsed["To"] == "user@example.com"
    assert parsed["Subject"] == "Hello World"
    assert parsed["Message-ID"] == "<5a377f3a-abeb-4e60-a59e-2a706e6021f8@odiseo.io>"
    assert parsed["Date"] == "Wed, 04 Mar 2026 05:06:07 +0000"
    text, html = (part.get_content() for part in parsed.iter_parts())
    assert "Welcome!" in text and "<h1>" not in text
    assert "this (https://x.example/a)" in text
    assert "<h1>Welcome!</h1>" in html


def test_given_text_part_is_used_as_is() -> None:
    parsed = _parse(build_message(_email(text="plain words\n"), date=DATE))
    text = next(iter(parsed.iter_parts())).get_content()
    assert text.replace("\r\n", "\n") == "plain words\n"


def test_text_only_message_is_single_part() -> None:
    parsed = _parse(build_message(_email(html=None, text="only text\n"), date=DATE))
    assert parsed.get_content_type() == "text/plain"


def test_bcc_never_appears_in_headers_but_is_a_recipient() -> None:
    email = _email(cc=("c@example.com",), bcc=("hidden@example.com",))
    raw = build_message(email, date=DATE)
    assert b"hidden@example.com" not in raw
    assert _parse(raw)["Cc"] == "c@example.com"
    assert email.recipients == ("user@example.com", "c@example.com", "hidden@example.com")


def test_non_ascii_subject_and_name_are_encoded() -> None:
    raw = build_message(
        _email(subject="Olá, señor — ünïcode", from_name="Équipe Odiseo"), date=DATE
    )
    assert b"=?utf-8?" in raw
    parsed = _parse(raw)
    assert parsed["Subject"] == "Olá, señor — ünïcode"
    assert parsed["From"].addresses[0].display_name == "Équipe Odiseo"


def test_custom_headers_are_added() -> None:
    parsed = _parse(build_message(_email(headers=(("X-Campaign", "spring"),)), date=DATE))
    assert parsed["X-Campaign"] == "spring"


def test_html_to_text_drops_scripts_and_keeps_structure() -> None:
    text = html_to_text(
        "<html><head><style>p{}</style></head><body><script>x()</script>"
        "<p>One</p><ul><li>a</li><li>b</li></ul>Two<br>Three &amp; four</body></html>"
    )
    assert "x()" not in text and "p{}" not in text
    assert "One" in text and "- a" in text and "- b" in text
    assert "Two\nThree & four" in text


def test_international_domains_become_idna_and_utf8_local_parts_are_refused() -> None:
    import pytest

    from odiseo.mime import ascii_address

    assert ascii_address("user@bücher.example") == "user@xn--bcher-kva.example"
    assert ascii_address("user@example.com") == "user@example.com"
    with pytest.raises(ValueError, match="SMTPUTF8"):
        ascii_address("josé@example.com")


def test_attachments_inline_and_files() -> None:
    from odiseo.domain.models import Attachment

    email = _email(
        html="<p><img src='cid:logo'></p>",
        attachments=(
            Attachment(
                filename="logo.png", content_type="image/png", data=b"\x89PNG", content_id="logo"
            ),
            Attachment(filename="a.pdf", content_type="application/pdf", data=b"%PDF-1.4"),
        ),
    )
    parsed = _parse(build_message(email, date=DATE))
    assert parsed.get_content_type() == "multipart/mixed"
    related = next(p for p in parsed.walk() if p.get_content_type() == "multipart/related")
    image = next(p for p in related.iter_parts() if p.get_content_type() == "image/png")
    assert image["Content-ID"] == "<logo>" and image.get_content() == b"\x89PNG"
    (pdf,) = list(parsed.iter_attachments())
    assert pdf.get_filename() == "a.pdf" and pdf.get_content() == b"%PDF-1.4"


def test_bodies_round_trip_whatever_their_lines_and_characters() -> None:
    long_line = "<p>" + "x" * 5000 + "</p>"
    unicode_html = "<p>Olá — 日本語 ✓</p>\n" * 3
    for html in (long_line, unicode_html, "<p>a</p>\r\n<p>b</p>"):
        parsed = _parse(build_message(_email(html=html, text=html), date=DATE))
        text_part, html_part = parsed.iter_parts()
        normal = html.replace("\r\n", "\n")
        assert html_part.get_content().replace("\r\n", "\n") == normal
        assert text_part.get_content().replace("\r\n", "\n") == normal


def test_long_and_non_ascii_headers_fold_and_decode_back() -> None:
    subject = "Résumé of the quarterly numbers " * 6
    parsed = _parse(
        build_message(
            _email(
                subject=subject,
                headers=(("X-Note", "ñ" * 80),),
                to=tuple(f"person{i}@example.com" for i in range(8)),
            ),
            date=DATE,
        )
    )
    assert parsed["Subject"] == subject
    assert parsed["X-Note"] == "ñ" * 80
    assert len(parsed["To"].addresses) == 8
    raw = build_message(_email(subject=subject), date=DATE)
    assert all(len(line) <= 998 for line in raw.split(b"\r\n"))
    assert raw.isascii()


def test_attachment_names_and_boundaries_survive_hostile_content() -> None:
    from odiseo.domain.models import Attachment

    seed = "5a377f3aabeb4e60a59e2a706e6021f8"
    sneaky = f"--=_{seed}_alternative\r\n"  # the boundary we would pick first
    email = _email(
        text=sneaky,
        attachments=(Attachment(filename="café résumé.pdf", content_type="application/pdf",
                                data=sneaky.encode()),),
    )  # fmt: skip
    parsed = _parse(build_message(email, date=DATE))
    (attachment,) = list(parsed.iter_attachments())
    assert attachment.get_filename() == "café résumé.pdf"
    assert attachment.get_content() == sneaky.encode()
    body = parsed.get_body(("plain",))
    assert body is not None and body.get_content().replace("\r\n", "\n") == sneaky.replace(
        "\r\n", "\n"
    )
