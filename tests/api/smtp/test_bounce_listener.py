"""The bounce listener over SMTP (aiosmtplib as the sending MTA), on both stores: only
tagged return paths are taken, a bounce is recorded before its 250, and what cannot be
read or matched is kept as inbound.unparsed."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiosmtplib
import pytest

from odiseo.domain.events import EventType
from odiseo.domain.models import EventFilter, PublishedEvent
from odiseo.storage.contract import Store
from tests.api.smtp.conftest import MAX_BYTES, PATHS, BounceListener
from tests.support.factories import new_email

FIXTURES = Path(__file__).parents[2] / "unit" / "returned"
FIXTURE_ID = "5a377f3a-abeb-4e60-a59e-2a706e6021f8"


async def send(listener: Any, rcpt: str, data: bytes) -> tuple[int, str]:
    """Send `data` from the null sender to `rcpt`; the reply to DATA (or the refusal)."""
    client = aiosmtplib.SMTP(hostname="127.0.0.1", port=listener.port, timeout=10)
    await client.connect()
    try:
        await client.mail("")
        code, text = await client.rcpt(rcpt)
        if code != 250:
            return code, text
        code, text = await client.data(data)
        return code, text
    except aiosmtplib.SMTPResponseException as exc:
        return exc.code, exc.message
    finally:
        await client.quit()


async def published(store: Store) -> list[PublishedEvent]:
    page, _ = await store.outcomes.events(EventFilter(), limit=50, before=None)
    return list(reversed(page))


async def stored_message(store: Store, to: str) -> str:
    item = new_email(to=to)
    await store.enqueue([item], now=datetime.now(UTC))
    return item.email.message_id


def dsn_for(message_id: str, name: str = "exim.eml") -> bytes:
    text = (FIXTURES / name).read_bytes().replace(FIXTURE_ID.encode(), message_id.encode())
    return text.replace(b"\n", b"\r\n")


@pytest.mark.parametrize(
    "rcpt",
    [
        "postmaster@bounce.odiseo.test",
        "bounces+5a377f3a-abeb-4e60-a59e-2a706e6021f8.aaaaaaaaaa@bounce.odiseo.test",
        "someone@example.com",  # not a relay
        PATHS.address(FIXTURE_ID).replace("bounce.odiseo.test", "other.test"),
    ],
)
async def test_anything_but_a_tagged_return_path_is_refused_at_rcpt(
    bounce_listener: BounceListener, store: Store, rcpt: str
) -> None:
    code, text = await send(bounce_listener, rcpt, b"Subject: x\r\n\r\nx\r\n")
    assert code == 550 and text.startswith("5.1.1"), (code, text)
    assert await published(store) == []


async def test_a_bounce_is_recorded_before_its_250(
    bounce_listener: BounceListener, store: Store
) -> None:
    message_id = await stored_message(store, "nobody@example.org")
    code, text = await send(bounce_listener, PATHS.address(message_id), dsn_for(message_id))
    assert code == 250, text
    (event,) = await published(store)
    assert event.message_id == message_id
    assert event.event.type == EventType.EMAIL_BOUNCED
    assert event.event.recipient == "nobody@example.org"
    assert event.event.smtp_code == 550
    assert await store.outcomes.suppression("nobody@example.org") is not None


async def test_unreadable_mail_is_kept_with_its_envelope(
    bounce_listener: BounceListener, store: Store
) -> None:
    message_id = await stored_message(store, "ana@example.com")
    vacation = b"From: ana@example.com\r\nSubject: Out of office\r\n\r\nBack on Monday.\r\n"
    rcpt = PATHS.address(message_id)
    code, _ = await send(bounce_listener, rcpt, vacation)
    assert code == 250
    (event,) = await published(store)
    assert event.event.type == EventType.INBOUND_UNPARSED
    assert event.message_id == message_id  # the return path named it
    data = event.event.data
    assert data is not None
    assert data["reason"].startswith("not a delivery status notification")
    assert data["raw"] == vacation.decode()
    assert data["rcpt_to"] == [rcpt] and data["mail_from"] == "<>"  # the null sender
    assert data["truncated"] is False and data["size"] == len(vacation)


async def test_a_bounce_for_a_message_no_longer_stored_is_kept(
    bounce_listener: BounceListener, store: Store
) -> None:
    gone = "00000000-0000-4000-8000-000000000000"  # tagged right, never stored
    code, _ = await send(bounce_listener, PATHS.address(gone), dsn_for(gone))
    assert code == 250
    (event,) = await published(store)
    assert event.event.type == EventType.INBOUND_UNPARSED
    assert event.message_id is None
    assert event.event.data is not None
    assert event.event.data["reason"] == "no stored message matches (deleted?)"


async def test_a_large_unreadable_message_is_kept_size_capped(
    bounce_listener: BounceListener, store: Store
) -> None:
    message_id = await stored_message(store, "ana@example.com")
    big = b"Subject: big\r\n\r\n" + (b"x" * 998 + b"\r\n") * 200
    code, _ = await send(bounce_listener, PATHS.address(message_id), big)
    assert code == 250
    (event,) = await published(store)
    data = event.event.data
    assert data is not None and data["truncated"] is True
    assert data["size"] == len(big) and len(data["raw"]) == 64 * 1024


async def test_a_message_beyond_the_size_limit_is_refused_with_552(
    bounce_listener: BounceListener, store: Store
) -> None:
    message_id = await stored_message(store, "ana@example.com")
    huge = b"Subject: huge\r\n\r\n" + (b"x" * 998 + b"\r\n") * (MAX_BYTES // 1000 + 10)
    code, _ = await send(bounce_listener, PATHS.address(message_id), huge)
    assert code == 552
    assert await published(store) == []
