"""OutboxProvider: each message becomes `<message_id>.eml`, written atomically."""

from __future__ import annotations

import asyncio
from email import message_from_bytes, policy
from pathlib import Path

import pytest

from odiseo.errors import TransientFailure
from odiseo.providers.outbox import OutboxProvider
from tests.support.factories import new_email
from tests.support.smtp_harness import deliver


def names(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def leftovers(directory: Path) -> list[str]:
    return [name for name in names(directory) if name.startswith(".tmp-")]


async def test_writes_a_parseable_eml_named_after_the_message(tmp_path: Path) -> None:
    outbox = tmp_path / "outbox"  # created on first delivery
    provider = OutboxProvider(outbox)
    email = new_email(subject="Olá, outbox ✓", bcc=("hidden@example.com",)).email

    receipt = await deliver(provider, email)

    target = outbox / f"{email.message_id}.eml"
    assert names(outbox) == [target.name]
    assert receipt.code is None
    assert str(target) in receipt.response
    raw = target.read_bytes()
    parsed = message_from_bytes(raw, policy=policy.default)
    assert parsed["Subject"] == "Olá, outbox ✓"
    assert parsed["Message-ID"] == email.rfc_message_id
    assert parsed["To"] == "user@example.com"
    assert b"hidden@example.com" not in raw
    assert parsed.get_content_type() == "multipart/alternative"
    await provider.close()


async def test_a_second_attempt_replaces_the_file(tmp_path: Path) -> None:
    provider = OutboxProvider(tmp_path)
    email = new_email().email

    await deliver(provider, email)
    await deliver(provider, email)

    assert names(tmp_path) == [f"{email.message_id}.eml"]


async def test_concurrent_deliveries_each_get_their_own_complete_file(tmp_path: Path) -> None:
    provider = OutboxProvider(tmp_path)
    emails = [new_email(subject=f"message {i}").email for i in range(20)]

    await asyncio.gather(*(deliver(provider, e) for e in emails))

    assert leftovers(tmp_path) == []
    for email in emails:
        parsed = message_from_bytes(
            (tmp_path / f"{email.message_id}.eml").read_bytes(), policy=policy.default
        )
        assert parsed["Message-ID"] == email.rfc_message_id
        assert parsed["Subject"] == email.subject


async def test_a_failed_write_is_transient_and_leaves_no_temp_file(tmp_path: Path) -> None:
    provider = OutboxProvider(tmp_path)
    email = new_email().email
    (tmp_path / f"{email.message_id}.eml").mkdir()  # the final rename cannot replace a folder

    with pytest.raises(TransientFailure) as raised:
        await deliver(provider, email)

    assert f"{email.message_id}.eml" in str(raised.value)
    assert leftovers(tmp_path) == []


async def test_delivery_into_a_path_under_a_file_is_transient(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    provider = OutboxProvider(blocker / "outbox")

    with pytest.raises(TransientFailure):
        await deliver(provider, new_email().email)


async def test_check_creates_a_missing_folder(tmp_path: Path) -> None:
    outbox = tmp_path / "a" / "b"

    await OutboxProvider(outbox).check()

    assert outbox.is_dir()


async def test_check_fails_transiently_on_an_unwritable_folder(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")

    with pytest.raises(TransientFailure) as raised:
        await OutboxProvider(blocker / "outbox").check()

    assert raised.value.message.startswith("outbox:")
