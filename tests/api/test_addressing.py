"""to/cc/bcc/reply_to, senders, custom headers, tags and metadata, non-ASCII headers."""

from __future__ import annotations

from email.header import decode_header, make_header
from typing import Any

import pytest

from tests.support.app import FROM_DEFAULT, Harness, email, raw_header


async def test_to_cc_bcc_reply_to_arrive_and_bcc_is_envelope_only(features: Harness) -> None:
    message_id = await features.send(
        email(
            subject="full",
            to=["to1@example.com", "to2@example.com"],
            cc=["cc1@example.com"],
            bcc=["hidden1@example.com", "hidden2@example.com"],
            reply_to=["answers@example.com", "help@example.com"],
        )
    )
    await features.send(
        email(
            subject="bcc only",
            to=["visible@example.com"],
            bcc=["secret@example.com"],
            reply_to="single@example.com",
        )
    )
    assert await features.deliver() == 2
    by_subject = {r.message["Subject"]: r for r in features.received}

    full = by_subject["full"]
    assert sorted(full.recipients) == [
        "cc1@example.com",
        "hidden1@example.com",
        "hidden2@example.com",
        "to1@example.com",
        "to2@example.com",
    ]
    assert full.sender == FROM_DEFAULT
    message = full.message
    assert [a.addr_spec for a in message["To"].addresses] == ["to1@example.com", "to2@example.com"]
    assert [a.addr_spec for a in message["Cc"].addresses] == ["cc1@example.com"]
    assert [a.addr_spec for a in message["Reply-To"].addresses] == [
        "answers@example.com",
        "help@example.com",
    ]
    assert message["Bcc"] is None
    raw = full.data.lower()
    assert b"\r\nbcc:" not in raw and not raw.startswith(b"bcc:")
    assert b"hidden1" not in raw and b"hidden2" not in raw
    stored = await features.email(message_id)
    assert stored["status"] == "sent"
    assert stored["cc"] == ["cc1@example.com"]
    assert stored["bcc"] == ["hidden1@example.com", "hidden2@example.com"]

    only = by_subject["bcc only"]
    assert sorted(only.recipients) == ["secret@example.com", "visible@example.com"]
    assert b"secret@" not in only.data and b"\r\nbcc:" not in only.data.lower()
    assert only.message["Cc"] is None
    assert only.message["Reply-To"] == "single@example.com"  # one address, not a list


async def test_allowed_from_email_appears_in_from_with_its_name(features: Harness) -> None:
    senders = ["billing@odiseo.io", "Billing@Odiseo.IO", "alerts@acme.example", "ops@acme.example"]
    for sender in senders:
        await features.send(email(from_email=sender, from_name="Billing Team", subject=sender))
    default_id = await features.send(email(subject="default"))
    assert await features.deliver() == len(senders) + 1
    by_subject = {r.message["Subject"]: r for r in features.received}
    for sender in senders:
        received = by_subject[sender]
        (author,) = received.message["From"].addresses
        assert author.addr_spec.lower() == sender.lower()
        assert author.display_name == "Billing Team"
        assert received.sender.lower() == sender.lower()  # the envelope sender too
    (author,) = by_subject["default"].message["From"].addresses
    assert (author.addr_spec, author.display_name) == (FROM_DEFAULT, "Odiseo")
    assert (await features.email(default_id))["from_email"] == FROM_DEFAULT


async def test_a_sender_not_allowed_is_422_naming_from_email(features: Harness) -> None:
    for sender in [
        "someone@evil.example",
        "billing@odiseo.io.evil.example",
        "alerts@acme.example.evil.example",
        "alerts@notacme.example",
        "other@odiseo.io",
    ]:
        response = await features.client.post("/emails", json=email(from_email=sender))
        assert response.status_code == 422, (sender, response.text)
        assert "from_email" in response.json()["detail"], sender
    await features.nothing_stored()
    assert await features.deliver() == 0
    assert features.received == []


async def test_custom_headers_arrive(features: Harness) -> None:
    headers = {
        "X-Campaign": "spring-2026",
        "List-Unsubscribe": "<mailto:unsubscribe@example.com>",
        "X-Entity-Ref-ID": "ref-1",
    }
    await features.send(email(subject="ascii", headers=headers))
    await features.send(
        email(subject="unicode", headers={"X-Campaign": "\u00c9t\u00e9 2026 \u2713"})
    )
    await features.deliver()
    by_subject = {r.message["Subject"]: r for r in features.received}
    plain = by_subject["ascii"]
    for name, value in headers.items():
        assert plain.message[name] == value
        assert raw_header(plain.data, name) == value
    unicode = by_subject["unicode"]
    assert "=?utf-8?" in raw_header(unicode.data, "x-campaign").lower()
    assert unicode.message["X-Campaign"] == "\u00c9t\u00e9 2026 \u2713"


async def test_a_custom_header_may_not_override_ours(features: Harness) -> None:
    for name in [
        "From",
        "To",
        "Subject",
        "Message-ID",
        "Date",
        "message-id",
        "FROM",
        "dAtE",
        "Bcc",
        "Cc",
        "Reply-To",
        "Sender",
        "Content-Type",
        "MIME-Version",
    ]:
        response = await features.client.post("/emails", json=email(headers={name: "x"}))
        assert response.status_code == 422, (name, response.text)
        assert "headers" in response.json()["detail"], name
    await features.nothing_stored()


async def test_line_breaks_and_bad_header_names_are_422(features: Harness) -> None:
    for value in ["a\r\nBcc: victim@example.com", "a\nX-Injected: 1", "a\rb", "a\x00b"]:
        response = await features.client.post("/emails", json=email(headers={"X-Campaign": value}))
        assert response.status_code == 422, (value, response.text)
        assert "headers" in response.json()["detail"]
    for field in ["subject", "from_name"]:
        response = await features.client.post(
            "/emails", json=email(**{field: "Hi\r\nBcc: victim@example.com"})
        )
        assert response.status_code == 422, (field, response.text)
        assert field in response.json()["detail"]
    for name in ["X Campaign", "X-Campaign:", "X-Caf\u00e9", "", "X-Line\r\nBcc"]:
        response = await features.client.post("/emails", json=email(headers={name: "1"}))
        assert response.status_code == 422, (name, response.text)
        assert "headers" in response.json()["detail"]
    await features.nothing_stored()


async def test_tags_and_metadata_are_stored_and_returned_but_never_sent(
    features: Harness,
) -> None:
    for field, value in [
        ("tags", [f"t{i}" for i in range(21)]),
        ("tags", ["x" * 65]),
        ("tags", [""]),
        ("metadata", {"blob": "x" * 5000}),
        ("tags", "not-a-list"),
        ("metadata", ["not", "an", "object"]),
    ]:
        response = await features.client.post("/emails", json=email(**{field: value}))
        assert response.status_code == 422, (field, response.text)
        assert field in response.json()["detail"]
    await features.nothing_stored()

    metadata = {"customer": "cust-secret-7731", "order": 42, "nested": {"plan": "gold-plan"}}
    message_id = await features.send(email(tags=["invoice", "tag-secret-9912"], metadata=metadata))
    await features.deliver()
    stored = await features.email(message_id)
    assert stored["tags"] == ["invoice", "tag-secret-9912"]
    assert stored["metadata"] == metadata
    (received,) = features.received
    for secret in (b"tag-secret-9912", b"cust-secret-7731", b"invoice", b"gold-plan"):
        assert secret not in received.data
    assert not any(name.lower().startswith(("x-tag", "x-meta")) for name in received.message)


async def test_recipient_limits_and_bad_addresses(features: Harness) -> None:
    many = [f"r{i}@example.com" for i in range(51)]
    for field in ["to", "cc", "bcc"]:
        response = await features.client.post("/emails", json=email(**{field: many}))
        assert response.status_code == 422, (field, response.text)
        assert field in response.json()["detail"]
    response = await features.client.post("/emails", json=email(to=[]))
    assert response.status_code == 422 and "to" in response.json()["detail"]
    for field, value in [
        ("to", ["not-an-address"]),
        ("cc", ["also bad@example.com"]),
        ("bcc", ["@example.com"]),
        ("reply_to", "nobody"),
        ("from_email", "billing@"),
        ("to", ["jos\u00e9@example.com"]),  # a non-ASCII local part would need SMTPUTF8
    ]:
        response = await features.client.post("/emails", json=email(**{field: value}))
        assert response.status_code == 422, (field, response.text)
        assert field in response.json()["detail"], (field, response.json())
    await features.nothing_stored()

    await features.send(email(to=many[:50]))  # 50 is the limit, inclusive
    await features.deliver()
    (received,) = features.received
    assert sorted(received.recipients) == sorted(many[:50])
    assert len(received.message["To"].addresses) == 50


async def test_international_domains_are_sent_as_idna(features: Harness) -> None:
    message_id = await features.send(
        email(to=["ana@b\u00fccher.example"], cc=["bo@M\u00dcNCHEN.example"])
    )
    await features.deliver()
    (received,) = features.received
    assert sorted(received.recipients) == ["ana@xn--bcher-kva.example", "bo@xn--mnchen-3ya.example"]
    received.data.split(b"\r\n\r\n", 1)[0].decode("ascii")
    assert [a.addr_spec for a in received.message["To"].addresses] == ["ana@xn--bcher-kva.example"]
    assert (await features.email(message_id))["to"] == ["ana@xn--bcher-kva.example"]


@pytest.mark.parametrize(
    "settings_overrides", [{"allowed_senders": "@b\u00fccher.example,ana@m\u00fcnchen.example"}]
)
async def test_allowed_senders_on_international_domains(features: Harness) -> None:
    """ALLOWED_SENDERS may name international domains as written (fixed in a72dba5)."""
    for sender in [
        "news@b\u00fccher.example",
        "news@xn--bcher-kva.example",
        "ana@m\u00fcnchen.example",
    ]:
        await features.send(email(from_email=sender, subject=sender))
    assert await features.deliver() == 3
    assert sorted(r.sender for r in features.received) == [
        "ana@xn--mnchen-3ya.example",
        "news@xn--bcher-kva.example",
        "news@xn--bcher-kva.example",
    ]
    refused = await features.client.post("/emails", json=email(from_email="x@acme.example"))
    assert refused.status_code == 422  # the overridden list no longer has @acme.example


# -- non-ASCII display names and subjects (RFC 2047) ---------------------------------------------

NON_ASCII = [
    ("\u00c9quipe Caf\u00e9", "Ol\u00e1 \u2014 \u00fcn\u00efcode \u2713"),
    (
        "\u5c71\u7530 \u592a\u90ce",
        " ".join(["\u3053\u3093\u306b\u3061\u306f\u3001\u4e16\u754c"] * 8),  # long: folded
    ),
    ('Caf\u00e9, "Le Bon" \u00e0 Paris', "\U0001f680 launch: \u00e9t\u00e9 " + "x" * 90),
]


async def test_non_ascii_names_and_subjects_are_rfc2047_and_decode_back(
    features: Harness,
) -> None:
    sent = {}
    for name, subject in NON_ASCII:
        message_id = await features.send(
            email(from_email="billing@odiseo.io", from_name=name, subject=subject)
        )
        sent[subject] = (name, message_id)
    await features.send(email(subject="Plain ASCII subject", from_name="Plain Name"))
    assert await features.deliver() == len(NON_ASCII) + 1
    for received in features.received:
        head = received.data.split(b"\r\n\r\n", 1)[0]
        head.decode("ascii")  # every header is 7-bit on the wire
        wire_subject = raw_header(received.data, "subject")
        if wire_subject == "Plain ASCII subject":  # ASCII is sent as it is
            assert raw_header(received.data, "from") == f"Plain Name <{FROM_DEFAULT}>"
            continue
        assert "=?utf-8?" in wire_subject.lower()
        assert "=?utf-8?" in raw_header(received.data, "from").lower()
        subject = str(make_header(decode_header(wire_subject)))
        assert subject in sent
        name, message_id = sent.pop(subject)
        message = received.message
        assert message["Subject"] == subject
        (author,) = message["From"].addresses
        assert (author.display_name, author.addr_spec) == (name, "billing@odiseo.io")
        assert (await features.email(message_id))["subject"] == subject
    assert sent == {}


async def test_a_non_ascii_body_arrives_intact(features: Harness) -> None:
    body: dict[str, Any] = {
        "body": "<p>Ol\u00e1 \u2014 caf\u00e9 \u2713</p>",
        "text": "Ol\u00e1 \u2014 caf\u00e9 \u2713\n",
    }
    await features.send(email(**body))
    await features.deliver()
    message = features.messages()[0]
    html = message.get_body(("html",))
    plain = message.get_body(("plain",))
    assert html is not None and plain is not None
    assert "Ol\u00e1 \u2014 caf\u00e9 \u2713" in html.get_content()
    assert plain.get_content().replace("\r\n", "\n") == body["text"]
