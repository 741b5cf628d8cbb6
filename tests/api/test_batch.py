"""POST /emails/batch: per-item results, partial and atomic batches, duplicates."""

from __future__ import annotations

from typing import Any

from odiseo.api.schemas import BatchItemOut, BatchOut
from tests.support.app import Harness, b64, email


async def post_batch(features: Harness, body: dict[str, Any], expect: int) -> dict[str, Any]:
    response = await features.client.post("/emails/batch", json=body)
    assert response.status_code == expect, response.text
    out = response.json()
    if "results" in out:  # the documented answer, key for key (it is written by hand)
        assert list(out) == list(BatchOut.model_fields)
        assert [list(item) for item in out["results"]] == [
            list(BatchItemOut.model_fields) for _ in out["results"]
        ]
        BatchOut.model_validate(out)
    return dict(out)


async def test_a_partial_batch_stores_the_valid_items_and_explains_the_rest(
    features: Harness,
) -> None:
    items = [
        email(to=["a@example.com"], subject="batch A"),
        email(to=["b@example.com"], subject="batch B"),
        email(to=["not-an-address"], subject="batch bad"),
        email(to=["c@example.com"], subject="batch C", bcc=["hidden@example.com"]),
    ]
    out = await post_batch(features, {"emails": items}, 202)
    assert out["status"] == "partial"
    assert (out["accepted"], out["rejected"]) == (3, 1)
    results = out["results"]
    assert [r["index"] for r in results] == [0, 1, 2, 3]
    assert [r["status"] for r in results] == ["accepted", "accepted", "error", "accepted"]
    assert results[2]["message_id"] is None
    assert "to" in results[2]["detail"]
    ids = [r["message_id"] for r in results if r["status"] == "accepted"]
    assert len(set(ids)) == 3 and all(ids)
    assert (await features.counts())["pending"] == 3

    assert await features.deliver() == 3
    by_subject = {r.message["Subject"]: r for r in features.received}
    assert sorted(by_subject) == ["batch A", "batch B", "batch C"]
    assert sorted(by_subject["batch C"].recipients) == ["c@example.com", "hidden@example.com"]
    assert b"hidden@" not in by_subject["batch C"].data
    for message_id in ids:
        assert (await features.email(message_id))["status"] == "sent"


async def test_service_level_errors_of_an_item_name_their_field(features: Harness) -> None:
    items = [
        email(subject="ok"),
        email(from_email="someone@evil.example"),
        email(template_id="no-such-template", body=None, subject=None),
        {"to": ["x@example.com"], "body": "<p>no subject</p>"},
        {"to": ["x@example.com"], "subject": "no body"},
        email(headers={"From": "x@example.com"}),
        email(unknown_field=1),
    ]
    out = await post_batch(features, {"emails": items}, 202)
    assert out["status"] == "partial"
    details = {r["index"]: r["detail"] for r in out["results"] if r["status"] == "error"}
    assert sorted(details) == [1, 2, 3, 4, 5, 6]
    assert "from_email" in details[1]
    assert "no-such-template" in details[2]
    assert "subject" in details[3]
    assert "body" in details[4]
    assert "headers" in details[5]
    assert "unknown_field" in details[6]
    assert await features.deliver() == 1
    assert [m["Subject"] for m in features.messages()] == ["ok"]


async def test_an_atomic_batch_with_one_invalid_item_stores_nothing(features: Harness) -> None:
    items = [email(subject="A"), email(to=["bad address"]), email(subject="C")]
    out = await post_batch(features, {"emails": items, "atomic": True}, 422)
    assert out["status"] == "rejected"
    # every item has its result, the valid ones as not stored (fixed in a72dba5)
    assert (out["accepted"], out["rejected"]) == (0, 3)
    assert [r["index"] for r in out["results"]] == [0, 1, 2]
    assert [r["status"] for r in out["results"]] == ["error"] * 3
    assert all(r["message_id"] is None for r in out["results"])
    assert "to" in out["results"][1]["detail"]
    assert "another item" in out["results"][0]["detail"]
    assert "another item" in out["results"][2]["detail"]

    service_level = [email(subject="A"), email(from_email="x@evil.example")]
    out = await post_batch(features, {"emails": service_level, "atomic": True}, 422)
    assert out["status"] == "rejected" and out["accepted"] == 0
    assert "from_email" in out["results"][1]["detail"]

    only_invalid = await post_batch(features, {"emails": [email(to=["nope"])]}, 422)
    assert only_invalid["status"] == "rejected"
    await features.nothing_stored()
    assert await features.deliver() == 0
    assert features.received == []

    # the same items, all valid, are stored
    valid = [email(subject=f"atomic {i}") for i in range(3)]
    out = await post_batch(features, {"emails": valid, "atomic": True}, 202)
    assert out["status"] == "accepted" and out["accepted"] == 3
    assert await features.deliver() == 3
    assert sorted(m["Subject"] for m in features.messages()) == [
        "atomic 0",
        "atomic 1",
        "atomic 2",
    ]


async def test_batch_size_limits(features: Harness) -> None:
    too_many = [email(to=[f"r{i}@example.com"]) for i in range(501)]
    response = await features.client.post("/emails/batch", json={"emails": too_many})
    assert response.status_code == 422, response.text
    assert "emails" in response.json()["detail"]
    empty = await features.client.post("/emails/batch", json={"emails": []})
    assert empty.status_code == 422
    unknown = await features.client.post("/emails/batch", json={"emails": [email()], "x": 1})
    assert unknown.status_code == 422
    await features.nothing_stored()


async def test_batch_items_repeating_a_client_message_id_are_duplicates(
    features: Harness,
) -> None:
    original = email(subject="invoice 42", client_message_id="invoice-42")
    first_id = await features.send(original)
    items = [
        original,
        email(subject="new one", client_message_id="invoice-43"),
        email(subject="different payload", client_message_id="invoice-42"),
    ]
    out = await post_batch(features, {"emails": items}, 202)
    results = out["results"]
    assert results[0]["status"] == "duplicate"
    assert results[0]["message_id"] == first_id
    assert results[0]["detail"]
    assert results[1]["status"] == "accepted" and results[1]["message_id"] != first_id
    assert results[2]["status"] == "error"
    assert "client_message_id" in results[2]["detail"]
    # the same key twice inside one batch: stored once
    item = email(subject="once", client_message_id="same-key")
    out = await post_batch(features, {"emails": [item, item]}, 202)
    assert [r["status"] for r in out["results"]] == ["accepted", "duplicate"]
    assert out["results"][0]["message_id"] == out["results"][1]["message_id"]
    assert await features.deliver() == 3
    assert sorted(m["Subject"] for m in features.messages()) == ["invoice 42", "new one", "once"]


async def test_batch_items_may_carry_every_feature(features: Harness) -> None:
    items = [
        email(
            subject="full",
            cc=["cc@example.com"],
            from_email="ops@acme.example",
            headers={"X-Campaign": "batch"},
            tags=["t1"],
            metadata={"k": "v"},
            priority=1,
            attachments=[{"filename": "a.txt", "content": b64(b"hello")}],
        )
    ]
    out = await post_batch(features, {"emails": items}, 202)
    message_id = out["results"][0]["message_id"]
    await features.deliver()
    message = features.messages()[0]
    assert message["X-Campaign"] == "batch"
    assert message["From"].addresses[0].addr_spec == "ops@acme.example"
    stored = await features.email(message_id)
    assert (stored["tags"], stored["metadata"], stored["priority"]) == (["t1"], {"k": "v"}, 1)
    assert stored["attachments"][0]["filename"] == "a.txt"
