"""send_at, PATCH /emails/{id}, expires_at and priority, up to what arrives over SMTP."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from tests.support.app import Harness, email


def iso(moment: datetime) -> str:
    return moment.isoformat()


def close(stored: str, expected: datetime) -> bool:
    return abs(datetime.fromisoformat(stored) - expected) < timedelta(seconds=1)


async def test_send_at_ahead_is_scheduled_and_not_delivered(features: Harness) -> None:
    later = datetime.now(UTC) + timedelta(hours=1)
    aware = await features.send(email(send_at=iso(later)))
    naive = await features.send(email(send_at=later.replace(tzinfo=None).isoformat()))  # UTC
    zoned_time = (datetime.now(UTC) + timedelta(minutes=30)).astimezone(
        timezone(timedelta(hours=5))
    )
    zoned = await features.send(email(send_at=iso(zoned_time)))
    for message_id, expected in [(aware, later), (naive, later), (zoned, zoned_time)]:
        stored = await features.email(message_id)
        assert stored["status"] == "scheduled"
        assert close(stored["next_attempt_at"], expected), (stored, expected)
    assert await features.deliver() == 0
    assert features.received == []
    assert (await features.counts())["scheduled"] == 3


async def test_send_at_in_the_past_is_delivered_now(features: Harness) -> None:
    message_id = await features.send(
        email(subject="late", send_at=iso(datetime.now(UTC) - timedelta(days=1)))
    )
    assert (await features.email(message_id))["status"] == "pending"
    assert await features.deliver() == 1
    assert features.messages()[0]["Subject"] == "late"
    assert (await features.email(message_id))["status"] == "sent"


async def test_patch_moves_a_waiting_message(features: Harness) -> None:
    scheduled = await features.send(
        email(subject="moved", send_at=iso(datetime.now(UTC) + timedelta(hours=1)))
    )
    pending = await features.send(email(subject="held"))
    later = datetime.now(UTC) + timedelta(hours=2)
    response = await features.client.patch(f"/emails/{pending}", json={"send_at": iso(later)})
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "scheduled"
    assert close(response.json()["next_attempt_at"], later)
    assert await features.deliver() == 0

    response = await features.client.patch(
        f"/emails/{scheduled}", json={"send_at": iso(datetime.now(UTC) - timedelta(minutes=5))}
    )
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "pending"
    assert "rescheduled" in [e["kind"] for e in response.json()["events"]]
    assert await features.deliver() == 1
    assert [m["Subject"] for m in features.messages()] == ["moved"]
    assert (await features.email(scheduled))["status"] == "sent"
    assert (await features.email(pending))["status"] == "scheduled"


async def test_patch_moves_a_scheduled_message_again_and_a_pending_one_to_now(
    features: Harness,
) -> None:
    now = datetime.now(UTC)
    scheduled = await features.send(email(subject="twice", send_at=iso(now + timedelta(hours=1))))
    later = now + timedelta(hours=3)
    response = await features.client.patch(f"/emails/{scheduled}", json={"send_at": iso(later)})
    assert response.status_code == 200, response.text  # scheduled stays scheduled, later
    assert response.json()["status"] == "scheduled"
    assert close(response.json()["next_attempt_at"], later)
    pending = await features.send(email(subject="now"))
    response = await features.client.patch(
        f"/emails/{pending}", json={"send_at": iso(now - timedelta(minutes=1))}
    )
    assert response.status_code == 200, response.text  # pending stays pending, due now
    assert response.json()["status"] == "pending"
    expired = await features.send(email(expires_at=iso(now - timedelta(minutes=1))))
    assert await features.deliver() == 1
    assert (await features.email(expired))["status"] == "failed"
    response = await features.client.patch(f"/emails/{expired}", json={"send_at": iso(now)})
    assert response.status_code == 409, response.text  # a failed message is retried, not moved
    assert "failed" in response.json()["detail"]
    assert (await features.email(expired))["status"] == "failed"
    assert [m["Subject"] for m in features.messages()] == ["now"]


async def test_patch_on_a_sent_unknown_or_invalid_message(features: Harness) -> None:
    message_id = await features.send(email())
    assert await features.deliver() == 1
    response = await features.client.patch(
        f"/emails/{message_id}", json={"send_at": iso(datetime.now(UTC) + timedelta(hours=1))}
    )
    assert response.status_code == 409, response.text
    assert response.json()["detail"]
    assert (await features.email(message_id))["status"] == "sent"

    unknown = await features.client.patch(
        "/emails/00000000-0000-4000-8000-000000000000", json={"send_at": iso(datetime.now(UTC))}
    )
    assert unknown.status_code == 404 and unknown.json()["detail"]
    garbage = await features.client.patch("/emails/not-a-uuid", json={"send_at": "2030-01-01"})
    assert garbage.status_code == 404
    for body in ({}, {"send_at": "tomorrow"}, {"send_at": iso(datetime.now(UTC)), "x": 1}):
        response = await features.client.patch(f"/emails/{message_id}", json=body)
        assert response.status_code == 422, (body, response.text)
    assert await features.deliver() == 0
    assert len(features.received) == 1


async def test_an_expired_message_fails_and_is_never_sent(features: Harness) -> None:
    now = datetime.now(UTC)
    expired = await features.send(
        email(subject="too late", expires_at=iso(now - timedelta(minutes=1)))
    )
    fresh = await features.send(email(subject="in time", expires_at=iso(now + timedelta(hours=1))))
    # scheduled for later, expired already; then made due by a PATCH
    released = await features.send(
        email(
            subject="released too late",
            send_at=iso(now + timedelta(hours=1)),
            expires_at=iso(now - timedelta(seconds=1)),
        )
    )
    assert (await features.email(expired))["status"] == "pending"  # accepted as given
    patched = await features.client.patch(
        f"/emails/{released}", json={"send_at": iso(now - timedelta(hours=1))}
    )
    assert patched.status_code == 200
    assert await features.deliver() == 1
    assert [m["Subject"] for m in features.messages()] == ["in time"]
    for message_id in (expired, released):
        stored = await features.email(message_id)
        assert stored["status"] == "failed"
        assert "expired" in stored["last_error"]
        assert stored["expires_at"] is not None
    assert (await features.email(fresh))["status"] == "sent"
    assert await features.deliver() == 0  # and it is not retried
    assert len(features.received) == 1


@pytest.mark.parametrize("settings_overrides", [{"smtp_pool_size": 1}])
async def test_lower_priority_number_arrives_first(features: Harness) -> None:
    for priority in (-1, 10, "high"):
        response = await features.client.post("/emails", json=email(priority=priority))
        assert response.status_code == 422, (priority, response.text)
        assert "priority" in response.json()["detail"]
    await features.nothing_stored()
    # one connection: the worker sends its batch one by one, in claim order
    await features.send(email(subject="p9-first-queued", priority=9))
    await features.send(email(subject="p5-default"))
    await features.send(email(subject="p0-urgent", priority=0))
    await features.send(email(subject="p0-urgent-later", priority=0))
    assert await features.deliver() == 4
    assert [m["Subject"] for m in features.messages()] == [
        "p0-urgent",
        "p0-urgent-later",
        "p5-default",
        "p9-first-queued",
    ]


@pytest.mark.parametrize("settings_overrides", [{"smtp_pool_size": 4}])
async def test_urgent_mail_goes_out_before_older_bulk(features: Harness) -> None:
    # Sent 4 at a time, in waves taken in claim order: every p0 message has arrived
    # before any p9 one, although the p9 ones were queued first.
    for i in range(4):
        await features.send(email(subject=f"bulk {i}", priority=9))
    for i in range(4):
        await features.send(email(subject=f"urgent {i}", priority=0))
    assert await features.deliver() == 8
    arrived = [m["Subject"] for m in features.messages()]
    assert sorted(arrived[:4]) == [f"urgent {i}" for i in range(4)]
    assert sorted(arrived[4:]) == [f"bulk {i}" for i in range(4)]
