"""Attachments: files, inline images in multipart/related, validation, MAX_MESSAGE_BYTES."""

from __future__ import annotations

import os
from email.message import EmailMessage
from typing import Any

import pytest

from tests.support.app import Harness, b64, email

PDF = b"%PDF-1.4\n" + bytes(range(256)) * 8 + b"\n%%EOF\n"
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(255, -1, -1)) * 2
CSV = b"id,name\r\n1,Ana\r\n2,Jos\xc3\xa9\r\n"


def attachments_of(message: EmailMessage) -> dict[str, EmailMessage]:
    found = {}
    for part in message.iter_attachments():
        assert isinstance(part, EmailMessage)
        filename = part.get_filename()
        assert filename is not None
        found[filename] = part
    return found


def payload_bytes(part: EmailMessage) -> bytes:
    data = part.get_payload(decode=True)
    assert isinstance(data, bytes)
    return data


async def test_a_file_arrives_with_filename_type_and_exact_bytes(features: Harness) -> None:
    message_id = await features.send(
        email(
            attachments=[
                {"filename": "invoice.pdf", "content": b64(PDF), "content_type": "application/pdf"}
            ]
        )
    )
    await features.deliver()
    message = features.messages()[0]
    assert message.get_content_type() == "multipart/mixed"
    files = attachments_of(message)
    assert list(files) == ["invoice.pdf"]
    part = files["invoice.pdf"]
    assert part.get_content_type() == "application/pdf"
    assert part.get_content_disposition() == "attachment"
    assert payload_bytes(part) == PDF
    assert message.get_body(("html",)) is not None  # the body is still there
    stored = await features.email(message_id)
    assert stored["attachments"] == [
        {
            "filename": "invoice.pdf",
            "content_type": "application/pdf",
            "content_id": None,
            "size": len(PDF),
        }
    ]


async def test_content_type_is_guessed_from_the_filename(features: Harness) -> None:
    unknown = os.urandom(64)
    accented = "r\u00e9sum\u00e9 \u2014 2026.pdf"
    message_id = await features.send(
        email(
            attachments=[
                {"filename": "report.csv", "content": b64(CSV)},
                {"filename": "photo.png", "content": b64(PNG)},
                {"filename": "blob.unknownext", "content": b64(unknown)},
                {"filename": accented, "content": b64(PDF)},
            ]
        )
    )
    await features.deliver()
    (received,) = features.received
    received.data.split(b"\r\n\r\n", 1)[0].decode("ascii")
    files = attachments_of(received.message)
    assert payload_bytes(files[accented]) == PDF  # a non-ASCII filename decodes back
    assert files[accented].get_content_type() == "application/pdf"
    assert files["report.csv"].get_content_type() == "text/csv"
    assert payload_bytes(files["report.csv"]) == CSV
    assert files["photo.png"].get_content_type() == "image/png"
    assert payload_bytes(files["photo.png"]) == PNG
    assert files["blob.unknownext"].get_content_type() == "application/octet-stream"
    assert payload_bytes(files["blob.unknownext"]) == unknown
    listed = (await features.email(message_id))["attachments"]
    assert [(a["filename"], a["content_type"], a["size"]) for a in listed] == [
        ("report.csv", "text/csv", len(CSV)),
        ("photo.png", "image/png", len(PNG)),
        ("blob.unknownext", "application/octet-stream", len(unknown)),
        (accented, "application/pdf", len(PDF)),
    ]


async def test_an_inline_image_joins_the_html_in_multipart_related(features: Harness) -> None:
    html = '<p>Hello</p><img src="cid:logo" alt="logo">'
    message_id = await features.send(
        email(
            body=html,
            attachments=[
                {"filename": "logo.png", "content": b64(PNG), "content_id": "logo"},
                {"filename": "terms.pdf", "content": b64(PDF)},
            ],
        )
    )
    await features.deliver()
    message = features.messages()[0]
    related = [p for p in message.walk() if p.get_content_type() == "multipart/related"]
    assert len(related) == 1
    parts = list(related[0].iter_parts())
    assert [p.get_content_type() for p in parts] == ["text/html", "image/png"]
    html_part, image = parts
    assert isinstance(html_part, EmailMessage) and isinstance(image, EmailMessage)
    assert 'src="cid:logo"' in html_part.get_content()
    assert image["Content-ID"] == "<logo>"
    assert payload_bytes(image) == PNG
    assert image.get_content_disposition() == "inline"
    # the plain alternative is there, and the regular file is a separate attachment
    assert message.get_body(("plain",)) is not None
    assert list(attachments_of(message)) == ["terms.pdf"]
    listed = (await features.email(message_id))["attachments"]
    assert [(a["filename"], a["content_id"]) for a in listed] == [
        ("logo.png", "logo"),
        ("terms.pdf", None),
    ]

    # a content_id given in angle brackets is taken bare
    await features.send(
        email(
            body='<img src="cid:logo@acme">',
            attachments=[{"filename": "l.png", "content": b64(PNG), "content_id": "<logo@acme>"}],
        )
    )
    await features.deliver()
    images = [p for p in features.messages()[1].walk() if p.get_content_type() == "image/png"]
    assert [p["Content-ID"] for p in images] == ["<logo@acme>"]


async def test_invalid_attachments_are_422_naming_attachments(features: Harness) -> None:
    bad: list[dict[str, Any]] = [
        {"filename": "a.pdf", "content": "not base64!!"},
        {"filename": "a.pdf", "content": "QUJ"},  # missing padding
        {"filename": "", "content": b64(PDF)},
        {"filename": "a\r\nBcc: x@example.com", "content": b64(PDF)},
        {"filename": "a.pdf", "content": b64(PDF), "content_type": "pdf"},
        {"filename": "a.pdf", "content": b64(PDF), "content_type": "text/html\r\nX: y"},
        {"filename": "a.pdf", "content": b64(PDF), "unknown": 1},
        {"content": b64(PDF)},
    ]
    for attachment in bad:
        response = await features.client.post("/emails", json=email(attachments=[attachment]))
        assert response.status_code == 422, (attachment, response.text)
        assert "attachments" in response.json()["detail"], response.json()
    await features.nothing_stored()

    # multipart/* or message/* bytes sent base64 would be unreadable (fixed in a72dba5):
    # refused, or else delivered intact
    eml = b"Subject: attached\r\n\r\nhello\r\n"
    accepted = 0
    for content_type in ("multipart/mixed", "message/rfc822", None):  # None: guessed from .eml
        attachment = {"filename": "note.eml", "content": b64(eml)}
        if content_type is not None:
            attachment["content_type"] = content_type
        response = await features.client.post("/emails", json=email(attachments=[attachment]))
        if response.status_code == 422:
            assert "attachments" in response.json()["detail"]
            continue
        assert response.status_code == 202, response.text
        accepted += 1
    assert accepted >= 1  # at least the one without a content_type
    assert await features.deliver() == accepted
    for message in features.messages():
        for part in message.walk():
            assert not part.defects, (part.get_content_type(), part.defects)
        (attached,) = attachments_of(message).values()
        assert payload_bytes(attached) == eml


@pytest.mark.parametrize("settings_overrides", [{"max_message_bytes": 50_000}])
async def test_a_message_over_max_message_bytes_is_413_and_not_stored(
    features: Harness,
) -> None:
    big = os.urandom(60_000)
    response = await features.client.post(
        "/emails", json=email(attachments=[{"filename": "big.bin", "content": b64(big)}])
    )
    assert response.status_code == 413, response.text
    detail = response.json()["detail"]
    assert "50000" in detail and "60" in detail
    await features.nothing_stored()
    # bodies count as well as attachments
    response = await features.client.post("/emails", json=email(body="<p>" + "x" * 60_000))
    assert response.status_code == 413, response.text
    await features.nothing_stored()
    # in a batch, the item over the limit is refused and the others are stored
    batch = {
        "emails": [
            email(subject="small"),
            email(subject="big", attachments=[{"filename": "big.bin", "content": b64(big)}]),
        ]
    }
    out = await features.client.post("/emails/batch", json=batch)
    assert out.status_code == 202, out.text
    assert [r["status"] for r in out.json()["results"]] == ["accepted", "error"]
    assert "50000" in out.json()["results"][1]["detail"]
    assert await features.deliver() == 1
    assert [m["Subject"] for m in features.messages()] == ["small"]
    # just under the limit is fine, and arrives whole
    fits = os.urandom(45_000)
    await features.send(email(attachments=[{"filename": "fits.bin", "content": b64(fits)}]))
    assert await features.deliver() == 1
    assert payload_bytes(attachments_of(features.messages()[1])["fits.bin"]) == fits
