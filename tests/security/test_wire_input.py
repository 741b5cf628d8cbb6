"""What reaches a message is checked at the API by the rules the writer applies (issue 11).

Every control character a header could turn into a line break is refused with a 422
naming the field — typed by the caller or produced by a template — and values the
writer could not encode are refused before anything is stored.
"""

from __future__ import annotations

import email
import email.policy
from typing import Any

import httpx
import pytest

from odiseo.errors import ConfigError
from tests.security.conftest import EMAIL, eventually, queue_counts
from tests.security.test_input import ATTACHMENT, injected
from tests.support.app import ALL_KEY, ClientFactory, SettingsFactory, auth

KEY = auth(ALL_KEY)

# Every character `str.splitlines()` or a mail program could take for a line break,
# and the other controls: C0 but TAB, DEL, C1, U+2028, U+2029.
CONTROLS = [chr(c) for c in (*range(0x09), *range(0x0A, 0x20), *range(0x7F, 0xA0))]
CONTROLS += ["\u2028", "\u2029"]
INJECTIONS = [
    "From : CEO <ceo@bank.example>",
    "Bcc : victim@example.com",
    "Reply-To : thief@example.com",
    "Content-Type : text/html\r\n\r\n<p>injected</p>",
]


async def test_every_control_character_in_a_header_value_is_a_422_naming_the_field(
    client: httpx.AsyncClient,
) -> None:
    wrong = []
    for field in ("subject", "from_name", "headers", "filename", "content_id"):
        for char in CONTROLS:
            value = "x" * 70 + char + "From : CEO <ceo@bank.example>"
            response = await client.post("/emails", json=injected(field, value), headers=KEY)
            detail = response.json().get("detail", "")
            if response.status_code != 422 or field not in detail:
                wrong.append(f"{field} U+{ord(char):04X}: {response.status_code} {detail}")
    assert not wrong, "\n".join(wrong)
    assert sum((await queue_counts(client)).values()) == 0


def _welcome(name: str) -> dict[str, Any]:
    return {"to": ["user@example.com"], "template_id": "welcome", "template_vars": {"name": name}}


async def test_a_rendered_subject_with_a_control_character_is_refused(
    client: httpx.AsyncClient,
) -> None:
    """The finding: 70 x's then FS and a header in `name` gave a 202 and a forged From."""
    stored = await client.put(
        "/templates/stored",
        json={"subject": "Hi {{ name }}", "html": "<p>{{ name }}</p>"},
        headers=KEY,
    )
    assert stored.status_code == 201, stored.text
    wrong = []
    for injection in INJECTIONS:
        for char in ("\x1c", "\x1d", "\x1e", "\x0b", "\x0c", "\x85"):
            name = "x" * 70 + char + injection
            for template_id in ("welcome", "stored"):
                payload = {**_welcome(name), "template_id": template_id}
                response = await client.post("/emails", json=payload, headers=KEY)
                if response.status_code != 422 or "subject" not in response.json()["detail"]:
                    wrong.append(f"{template_id} {char!r}: {response.status_code} {response.text}")
                batch = await client.post("/emails/batch", json={"emails": [payload]}, headers=KEY)
                result = batch.json()["results"][0]
                if batch.status_code != 422 or "subject" not in (result["detail"] or ""):
                    wrong.append(f"batch {template_id} {char!r}: {batch.text}")
    assert not wrong, "\n".join(wrong[:20])
    assert sum((await queue_counts(client)).values()) == 0


async def test_what_is_accepted_arrives_with_exactly_the_headers_asked_for(
    make_settings: SettingsFactory, start_client: ClientFactory
) -> None:
    """Unusual but admitted values (TAB, long, non-ASCII, encoded-word lookalikes) are sent
    as one header each, and decode back as posted."""
    settings = make_settings(email_worker_poll_interval=0.1)
    client = await start_client(settings, with_worker=True)
    subject = "x" * 70 + "\tFrom : CEO <ceo@bank.example> =?utf-8?q?caf=C3=A9?= " + "中" * 120
    payload = {
        **EMAIL,
        "subject": subject,
        "from_name": "Ñandú " * 40,
        "headers": {"X-Campaign": "k=v;" * 200},
        "attachments": [{**ATTACHMENT, "filename": "報告" * 120 + ".txt"}],
    }
    response = await client.post("/emails", json=payload, headers=KEY)
    assert response.status_code == 202, response.text
    path = settings.outbox_dir / f"{response.json()['message_id']}.eml"

    async def written() -> bool:
        return path.exists()

    await eventually(written, timeout=15, what="the message to be written")
    raw = path.read_bytes()
    assert max(map(len, raw.split(b"\r\n"))) <= 998
    message = email.message_from_bytes(raw, policy=email.policy.strict)
    assert sorted(message.keys()) == sorted(
        ["From", "To", "Subject", "Date", "Message-ID", "X-Campaign", "MIME-Version",
         "Content-Type"]
    )  # fmt: skip
    assert str(message["Subject"]) == subject
    assert str(message["X-Campaign"]) == "k=v;" * 200
    (attachment,) = list(message.iter_attachments())
    assert attachment.get_filename() == "報告" * 120 + ".txt"
    assert attachment.get_content_charset() == "us-ascii"


async def test_header_names_must_match_whole(client: httpx.AsyncClient) -> None:
    """`X-A\\n` passed a `$`-anchored pattern; and the writer's own fields cannot be given."""
    wrong = []
    for name in ("X-A\n", "X-A\r\n", "X-A\n ", "Content-Disposition", "DKIM-Signature"):
        response = await client.post("/emails", json={**EMAIL, "headers": {name: "v"}}, headers=KEY)
        if response.status_code != 422 or "headers" not in response.json()["detail"]:
            wrong.append(f"{name!r}: {response.status_code} {response.text}")
    assert not wrong, "\n".join(wrong)


async def test_values_the_writer_cannot_encode_are_refused_at_the_api(
    client: httpx.AsyncClient,
) -> None:
    """Non-ASCII letters passed `\\w`, then the message failed with UnicodeEncodeError."""
    wrong = []
    for field, value in [
        ("content_type", "text/pla\u0131n"),  # a dotless i passed \\w
        ("content_type", "téxt/plain"),
        ("content_type", "text/plain\n"),
        ("content_type", "text/plain; charset=utf-8"),
        ("content_id", "lögo"),
        ("content_id", "<a b>"),
        ("content_id", "a@b@c"),
        ("content_id", "=?utf-8?q?logo?="),  # a reader would decode it: cid: no longer matches
        ("filename", "   "),
    ]:
        payload = {**EMAIL, "attachments": [{**ATTACHMENT, field: value}]}
        response = await client.post("/emails", json=payload, headers=KEY)
        if response.status_code != 422 or field not in response.json()["detail"]:
            wrong.append(f"{field}={value!r}: {response.status_code} {response.text}")
    assert not wrong, "\n".join(wrong)
    assert sum((await queue_counts(client)).values()) == 0
    fine = {**EMAIL, "attachments": [{**ATTACHMENT, "content_id": "<logo@x>"}]}
    assert (await client.post("/emails", json=fine, headers=KEY)).status_code == 202


async def test_an_address_a_reader_could_decode_is_refused(client: httpx.AsyncClient) -> None:
    """`=?utf-8?b?QUJD?=@example.com` is a valid dot-atom, which Python's parser (and some
    readers) decode into an address the sender did not write."""
    for field in ("to", "cc", "bcc", "reply_to"):
        address = "=?utf-8?b?QUJD?=@example.com"
        value = address if field == "reply_to" else [address]
        response = await client.post("/emails", json={**EMAIL, field: value}, headers=KEY)
        assert response.status_code == 422, response.text
        assert response.json()["detail"].startswith(field), response.text


SPECIAL_USE = {
    "from_email": "news@brand.test",
    "reply_to": "help@brand.test",
    "to": ["ops@corp.local"],
    "cc": ["desk@it.internal"],
    "bcc": ["audit@x.invalid"],
}


async def test_special_use_domains_are_accepted_unless_refused_by_setting(
    make_settings: SettingsFactory, start_client: ClientFactory
) -> None:
    open_ = await start_client(
        make_settings(smtp_from_email="noreply@odiseo.test", allowed_senders="@brand.test")
    )
    for field, value in SPECIAL_USE.items():
        response = await open_.post("/emails", json={**EMAIL, field: value}, headers=KEY)
        assert response.status_code == 202, f"{field}: {response.text}"
    strict = await start_client(
        make_settings(allowed_senders="@brand.test", refuse_special_use_domains=True)
    )
    for field, value in SPECIAL_USE.items():
        response = await strict.post("/emails", json={**EMAIL, field: value}, headers=KEY)
        assert response.status_code == 422, f"{field}: {response.text}"
        assert response.json()["detail"].startswith(field), response.text
    private = {**EMAIL, "to": ["ops@office.lan"]}  # private by custom, reserved by nobody
    assert (await strict.post("/emails", json=private, headers=KEY)).status_code == 202


async def test_a_special_use_sender_is_refused_at_start_when_the_setting_asks(
    make_settings: SettingsFactory, start_client: ClientFactory
) -> None:
    settings = make_settings(smtp_from_email="noreply@odiseo.test", refuse_special_use_domains=True)
    with pytest.raises(ConfigError, match="SMTP_FROM_EMAIL"):
        await start_client(settings)
