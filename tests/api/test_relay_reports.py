"""Hosted relays' bounce and complaint reports through the app, on both stores: SES via
SNS (signatures checked against a locally made certificate, served by the injectable
fetch), SendGrid (ECDSA), Postmark (basic auth), Mailgun (HMAC). Each maps to the same
events and suppressions as a bounce message, matched by the relay's id (recorded from
its reply to DATA) or by our Message-ID; what matches nothing is kept."""

from __future__ import annotations

import json
from typing import Any

import pytest

from odiseo.api.wiring import build_bounce_service
from odiseo.domain.models import SuppressionReason
from odiseo.storage.contract import Store
from tests.support import relays
from tests.support.app import Harness
from tests.support.relays import SendGrid, Sns

SENDGRID = SendGrid()
SES_ID = "0100018f2f1e6b0a-1c2d3e4f-5a6b-7c8d-9e0f-a1b2c3d4e5f6-000000"
TO = "ana@example.com"


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {
        "ses_sns_topic_arns": relays.TOPIC,
        "sendgrid_webhook_public_key": SENDGRID.public,
        "postmark_webhook_token": relays.POSTMARK_TOKEN,
        "mailgun_webhook_signing_key": relays.MAILGUN_KEY,
    }


@pytest.fixture
def sns(features: Harness) -> Sns:
    """SNS's side, its certificate fetched through the service's injectable fetch."""
    signer = Sns()
    store: Store = features.app.state.service.store
    features.app.state.bounces = build_bounce_service(features.settings, store, fetch=signer.fetch)
    return signer


async def sent(features: Harness, *, reply: str = "250 2.0.0 Message accepted") -> dict[str, Any]:
    """A message to TO, delivered by SMTP (the server answering DATA with `reply`)."""
    features.smtp.handler.accepted_reply = reply
    message_id = await features.send({"to": [TO], "subject": "Hello", "body": "<p>Hi</p>"})
    assert await features.deliver() == 1
    return await features.email(message_id)


async def published(features: Harness, message_id: str | None = None) -> list[dict[str, Any]]:
    query = f"?message_id={message_id}" if message_id else ""
    answer = await features.client.get(f"/events{query}")
    assert answer.status_code == 200, answer.text
    return [e for e in reversed(answer.json()["items"]) if e["type"] != "email.sent"]


async def suppression(features: Harness, address: str) -> dict[str, Any] | None:
    answer = await features.client.get(f"/suppressions/{address}")
    return answer.json() if answer.status_code == 200 else None


def sns_post(message: dict[str, Any], topic: str = relays.TOPIC) -> dict[str, Any]:
    # SNS posts its JSON as text/plain, naming the topic and type in headers too.
    headers = {
        "Content-Type": "text/plain; charset=UTF-8",
        "x-amz-sns-message-type": message["Type"],
        "x-amz-sns-topic-arn": topic,
    }
    return {"content": json.dumps(message).encode(), "headers": headers}


# -- SES through SNS ---------------------------------------------------------------------


async def test_ses_subscription_is_confirmed(features: Harness, sns: Sns) -> None:
    answer = await features.client.post("/inbound/ses", **sns_post(sns.confirmation()))
    assert answer.status_code == 200, answer.text
    assert sns.fetched == [relays.CERT_URL, relays.SUBSCRIBE_URL]


@pytest.mark.parametrize("version", ["1", "2"])
async def test_ses_bounce_found_by_the_relay_id(features: Harness, sns: Sns, version: str) -> None:
    email = await sent(features, reply=f"250 Ok {SES_ID}")
    event = relays.ses_bounce(recipient=TO, ses_id=SES_ID, rfc_message_id="<not-ours@x.test>")
    message = sns.sign({**sns.notification(event), "SignatureVersion": version}, version=version)
    answer = await features.client.post("/inbound/ses", **sns_post(message))
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"recorded": 1}
    (bounced,) = await published(features, email["message_id"])
    assert bounced["type"] == "email.bounced"
    assert bounced["recipient"] == TO
    assert bounced["data"]["source"] == "ses"
    assert bounced["data"]["suppressed"] is True
    found = await suppression(features, TO)
    assert found is not None and found["reason"] == SuppressionReason.HARD_BOUNCE


async def test_ses_complaint_and_delay_by_our_message_id(features: Harness, sns: Sns) -> None:
    email = await sent(features)
    ids = {"recipient": TO, "ses_id": "unknown-to-us", "rfc_message_id": email["rfc_message_id"]}
    for event in (relays.ses_delay(**ids), relays.ses_complaint(**ids)):
        answer = await features.client.post("/inbound/ses", **sns_post(sns.notification(event)))
        assert answer.json() == {"recorded": 1}, answer.text
    types = [e["type"] for e in await published(features, email["message_id"])]
    assert types == ["email.delayed", "email.complained"]
    found = await suppression(features, TO)
    assert found is not None and found["reason"] == SuppressionReason.COMPLAINT


async def test_ses_forgeries_are_refused(features: Harness, sns: Sns) -> None:
    email = await sent(features)
    event = relays.ses_bounce(recipient=TO, ses_id=SES_ID, rfc_message_id=email["rfc_message_id"])
    good = sns.notification(event)
    forged = {**good, "Message": good["Message"].replace(TO, "bob@example.com")}
    stranger = Sns().notification(event)  # signed by a key whose certificate SNS never served
    elsewhere = {**good, "SigningCertURL": "https://sns.evil.example/cert.pem"}
    plain = {**good, "SigningCertURL": relays.CERT_URL.replace("https", "http")}
    for message in (forged, stranger, elsewhere, plain):
        answer = await features.client.post("/inbound/ses", **sns_post(message))
        assert answer.status_code == 401, answer.text
        assert answer.json()["detail"]
    other_topic = sns.notification(event, TopicArn="arn:aws:sns:eu-west-1:999:other")
    for topic in (relays.TOPIC, "arn:aws:sns:eu-west-1:999:other"):
        answer = await features.client.post("/inbound/ses", **sns_post(other_topic, topic))
        assert answer.status_code == 401, answer.text
    assert await published(features, email["message_id"]) == []
    assert await suppression(features, TO) is None
    assert set(sns.fetched) <= {relays.CERT_URL}  # nothing else was ever fetched


async def test_ses_malformed_is_a_422(features: Harness, sns: Sns) -> None:
    for content in (b"not json", b"[]", b'{"Type": "Other"}'):
        headers = {"x-amz-sns-topic-arn": relays.TOPIC}
        answer = await features.client.post("/inbound/ses", content=content, headers=headers)
        assert answer.status_code == 422, answer.text
    broken = sns.notification({"notificationType": "Bounce", "bounce": {"bouncedRecipients": 1}})
    answer = await features.client.post("/inbound/ses", **sns_post(broken))
    assert answer.status_code == 422 and "bouncedRecipients" in answer.json()["detail"]


# -- SendGrid, Postmark, Mailgun ---------------------------------------------------------


async def test_sendgrid_batch(features: Harness) -> None:
    email = await sent(features)
    batch = relays.sendgrid_events(recipient=TO, rfc_message_id=email["rfc_message_id"])
    body = json.dumps(batch).encode()
    answer = await features.client.post(
        "/inbound/sendgrid", content=body, headers=SENDGRID.headers(body)
    )
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"recorded": 3}  # the delivery reports nothing that came back
    events = await published(features, email["message_id"])
    assert [e["type"] for e in events] == ["email.bounced", "email.delayed", "email.complained"]
    found = await suppression(features, TO)
    assert found is not None and found["reason"] == SuppressionReason.HARD_BOUNCE


async def test_sendgrid_signature_is_required(features: Harness) -> None:
    body = json.dumps(relays.sendgrid_events(recipient=TO, rfc_message_id="<a@b>")).encode()
    headers = SENDGRID.headers(body)
    tampered = body.replace(b"bounce", b"bounced")
    for content, sent_headers in (
        (tampered, headers),
        (body, {**headers, "X-Twilio-Email-Event-Webhook-Timestamp": "1764590406"}),
        (body, SendGrid().headers(body)),
        (body, {"Content-Type": "application/json"}),
    ):
        answer = await features.client.post(
            "/inbound/sendgrid", content=content, headers=sent_headers
        )
        assert answer.status_code == 401, answer.text


async def test_postmark_bounce_by_its_id_after_basic_auth(features: Harness) -> None:
    postmark_id = "883953f4-6105-42a2-a16a-77a8eac79483"
    email = await sent(features, reply=f"250 2.0.0 Ok: queued as {postmark_id}")
    body = json.dumps(relays.postmark_bounce(recipient=TO, postmark_id=postmark_id)).encode()
    for wrong in (relays.basic("wrong-token-0123456789"), {"Content-Type": "application/json"}):
        answer = await features.client.post("/inbound/postmark", content=body, headers=wrong)
        assert answer.status_code == 401, answer.text
    answer = await features.client.post(
        "/inbound/postmark", content=body, headers=relays.basic(relays.POSTMARK_TOKEN)
    )
    assert answer.json() == {"recorded": 1}, answer.text
    (bounced,) = await published(features, email["message_id"])
    assert bounced["data"]["type"] == "HardBounce" and bounced["data"]["suppressed"]
    assert await suppression(features, TO) is not None


async def test_mailgun_failures_and_signature(features: Harness) -> None:
    email = await sent(features)
    bare_id = email["rfc_message_id"].strip("<>")  # Mailgun gives it without brackets
    temporary = relays.mailgun_failed(recipient=TO, message_id=bare_id, severity="temporary")
    permanent = relays.mailgun_failed(recipient=TO, message_id=bare_id)
    forged = relays.mailgun_body(permanent, key="not-the-key")
    answer = await features.client.post("/inbound/mailgun", content=forged)
    assert answer.status_code == 401, answer.text
    for event in (temporary, permanent):
        answer = await features.client.post("/inbound/mailgun", content=relays.mailgun_body(event))
        assert answer.json() == {"recorded": 1}, answer.text
    events = await published(features, email["message_id"])
    assert [(e["type"], e["smtp_code"]) for e in events] == [
        ("email.delayed", 452),
        ("email.bounced", 550),
    ]
    assert await suppression(features, TO) is not None


async def test_a_report_matching_no_message_is_kept(features: Harness) -> None:
    event = relays.mailgun_failed(recipient=TO, message_id="gone@elsewhere.test")
    answer = await features.client.post("/inbound/mailgun", content=relays.mailgun_body(event))
    assert answer.json() == {"recorded": 0}, answer.text
    (kept,) = await published(features)
    assert kept["type"] == "inbound.unparsed"
    assert kept["data"]["reason"] == "no stored message matches"
    assert kept["data"]["source"] == "mailgun"
    assert json.loads(kept["data"]["raw"]) == event
    assert await suppression(features, TO) is None


@pytest.mark.parametrize("settings_overrides", [{}])
async def test_endpoints_are_off_until_configured(features: Harness) -> None:
    for path in ("ses", "sendgrid", "postmark", "mailgun"):
        answer = await features.client.post(f"/inbound/{path}", content=b"{}")
        assert answer.status_code == 404, answer.text
        assert "set " in answer.json()["detail"]
