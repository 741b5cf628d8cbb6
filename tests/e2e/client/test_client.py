"""The Python client (clients/python, odiseo_client) against a real `odiseo run` process:
every call over HTTP, the mail delivered to the outbox, webhooks to a real receiver."""

from __future__ import annotations

import ast
import base64
import json
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import odiseo_client
import pytest
from odiseo_client import (
    AsyncOdiseo,
    Conflict,
    Invalid,
    NotFound,
    Odiseo,
    Unauthorized,
    Unavailable,
    WebhookVerificationError,
    verify_webhook,
)
from standardwebhooks import Webhook as StandardWebhook

from tests.e2e.client.conftest import KEY, outbox
from tests.support.processes import Launcher, Process, base_env, poll
from tests.support.receiver import Receiver
from tests.support.smtp import free_port

pytestmark = pytest.mark.e2e


def test_send_get_and_the_mail_arrives(client: Odiseo, service: Process, tmp_path: Path) -> None:
    report = tmp_path / "report.csv"
    report.write_bytes(b"a,b\n1,2\n")
    accepted = client.send(
        "ana@example.com",
        "Hello from the client",
        "<p>Hi <b>Ana</b></p>",
        cc=["bo@example.com"],
        attachments=[report],
        tags=["client"],
        metadata={"order": 7},
    )
    assert isinstance(accepted, odiseo_client.Accepted) and not accepted.duplicate
    mail = outbox(service, accepted.message_id)
    assert mail["Subject"] == "Hello from the client" and mail["Cc"] == "bo@example.com"
    [attached] = [part for part in mail.iter_attachments()]
    assert attached.get_filename() == "report.csv" and attached.get_content() in (
        "a,b\n1,2\n",
        b"a,b\n1,2\n",
    )
    email = client.get(accepted.message_id)
    assert isinstance(email, odiseo_client.Email) and email.to == ["ana@example.com"]
    assert email.metadata == {"order": 7} and isinstance(email.created_at, datetime)


def test_search_follows_the_cursor_across_pages(client: Odiseo) -> None:
    tag = f"t{uuid.uuid4().hex[:8]}"
    batch = client.send_batch(
        [odiseo_client.email(f"u{i}@example.com", f"n{i}", text="x", tags=[tag]) for i in range(5)]
    )
    assert (batch.accepted, batch.rejected) == (5, 0)
    assert all(item.message_id for item in batch.results)
    found = list(client.search(tag=tag, page_size=2))  # three pages
    assert sorted(e.message_id for e in found) == sorted(r.message_id for r in batch.results)  # type: ignore[type-var]


def test_a_lost_answer_is_retried_with_the_same_key_and_stores_once(service: Process) -> None:
    """The first try reaches Odiseo (and is stored), its answer is lost on the way back;
    the retry carries the same Idempotency-Key, so it finds the message: one email."""
    real = httpx.HTTPTransport()
    seen: list[str] = []

    class LosesFirstAnswer(httpx.BaseTransport):
        def handle_request(self, request: httpx.Request) -> httpx.Response:
            response = real.handle_request(request)
            seen.append(request.headers.get("idempotency-key", ""))
            if len(seen) == 1:
                response.close()
                raise httpx.ReadError("connection reset", request=request)
            return response

    tag = f"lost{uuid.uuid4().hex[:8]}"
    with Odiseo(service.base_url, KEY, backoff=0.01, transport=LosesFirstAnswer()) as odiseo:
        accepted = odiseo.send("once@example.com", "once", text="x", tags=[tag])
    real.close()
    assert len(seen) == 2 and seen[0] == seen[1] and seen[0]
    assert accepted.duplicate
    with Odiseo(service.base_url, KEY) as odiseo:
        assert [e.message_id for e in odiseo.search(tag=tag)] == [accepted.message_id]


def test_each_error_class(client: Odiseo, service: Process) -> None:
    with Odiseo(service.base_url, "wrong-key-0123456789") as stranger, pytest.raises(Unauthorized):
        stranger.get(str(uuid.uuid4()))
    with pytest.raises(NotFound) as missing:
        client.get(str(uuid.uuid4()))
    assert missing.value.status == 404
    with pytest.raises(Invalid) as invalid:
        client.send("not an address", "s", text="x")
    assert invalid.value.status == 422
    assert invalid.value.errors and invalid.value.errors[0]["loc"][:2] == ["body", "to"]
    with pytest.raises(Invalid) as unknown:
        client.send("a@example.com", template="no-such-template")
    assert unknown.value.errors[0]["type"] == "template_unknown"
    key = str(uuid.uuid4())
    client.send("a@example.com", "first", text="x", client_message_id=key)
    with pytest.raises(Conflict):
        client.send("a@example.com", "another", text="x", client_message_id=key)


def test_reschedule_cancel_and_retry(client: Odiseo, tmp_path: Path) -> None:
    later = datetime.now(UTC).replace(microsecond=0) + timedelta(days=1)
    scheduled = client.send("later@example.com", "later", text="x", send_at=later)
    moved = client.reschedule(scheduled.message_id, later + timedelta(hours=1))
    assert moved.status == "scheduled" and moved.next_attempt_at == later + timedelta(hours=1)
    cancelled = client.cancel(scheduled.message_id)
    with pytest.raises(Conflict):  # only a waiting message moves
        client.reschedule(scheduled.message_id, later)
    assert cancelled.status == "cancelled"
    with pytest.raises(Conflict):
        client.cancel(scheduled.message_id)
    with pytest.raises(Conflict, match="only scheduled/failed"):  # retry is for those
        client.retry(scheduled.message_id)
    # An API without a worker keeps a message pending: there it can be moved.
    launcher = Launcher(tmp_path)
    api = launcher.start(["api"], base_env(API_KEYS=KEY))
    try:
        api.wait_ready()
        with Odiseo(api.base_url, KEY) as quiet:
            pending = quiet.send("now@example.com", "now", text="x")
            moved = quiet.reschedule(pending.message_id, later)
            assert moved.next_attempt_at == later and moved.status == "scheduled"
    finally:
        launcher.stop_all()


def test_templates(client: Odiseo, service: Process) -> None:
    welcome = client.template("welcome")
    assert (welcome.source, welcome.variables) == ("file", ["name"])
    saved = client.put_template(
        "receipt", subject="Receipt {{ n }}", html="<p>{{ n }} for {{ who }}</p>"
    )
    assert (saved.version, saved.source) == (1, "stored")
    listed = {t.id: t for t in client.templates()}
    assert listed["receipt"].variables == ["n", "who"] and "welcome" in listed
    assert client.render("receipt", {"n": 3, "who": "Ana"}).html == "<p>3 for Ana</p>"
    sent = client.send("r@example.com", template="receipt", variables={"n": 4, "who": "Bo"})
    assert outbox(service, sent.message_id)["Subject"] == "Receipt 4"
    client.delete_template("receipt")
    with pytest.raises(NotFound):
        client.template("receipt")


def test_suppressions_and_events(client: Odiseo) -> None:
    address = f"gone-{uuid.uuid4().hex[:6]}@example.com"
    entry = client.suppress(address, detail="asked by phone")
    assert (entry.address, entry.reason) == (address, "manual")
    assert client.suppression(address).detail == "asked by phone"
    assert address in [s.address for s in client.suppressions(search=address)]
    accepted = client.send(address, "s", text="x")
    assert accepted.suppressed == [address]
    # The skipped recipient's email.suppressed is written when the worker takes the
    # message, which reads the list again then: removing the address first (as this
    # test did, a race a loaded machine lost) would let the mail go out after all.
    events = poll(
        lambda: list(client.events(message_id=accepted.message_id, type="email.suppressed")),
        timeout=30,
        what="the email.suppressed event",
    )
    assert [(e.type, e.recipient) for e in events] == [("email.suppressed", address)]
    client.unsuppress(address)
    with pytest.raises(NotFound):
        client.suppression(address)


def test_webhooks_deliver_what_verify_webhook_accepts(client: Odiseo) -> None:
    receiver = Receiver().start()
    try:
        created = client.create_webhook(receiver.url, events=["webhook.test"])
        assert created.secret and created.secret.startswith("whsec_")
        assert created.id in [w.id for w in client.webhooks()]
        client.test_webhook(created.id)
        poll(lambda: receiver.hits, timeout=30, what="a webhook delivery")
        hit = receiver.hits[0]
        payload = verify_webhook(hit.headers, hit.body, created.secret)
        assert payload == hit.verify(created.secret)  # as the standardwebhooks package reads it
        with pytest.raises(WebhookVerificationError):
            verify_webhook(hit.headers, hit.body + b" ", created.secret)
        rotated = client.rotate_webhook_secret(created.id)
        assert rotated.secret != created.secret
        assert not client.update_webhook(created.id, enabled=False).enabled
        client.delete_webhook(created.id)
        with pytest.raises(NotFound):
            client.webhook(created.id)
    finally:
        receiver.stop()


@pytest.mark.parametrize("tamper", ["none", "body", "secret", "old", "id"])
def test_verify_webhook_agrees_with_standardwebhooks(tamper: str) -> None:
    secret = "whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()
    body = json.dumps({"type": "email.sent", "data": {"n": 1}}).encode()
    now = datetime.now(UTC)
    stamp = now - timedelta(minutes=10) if tamper == "old" else now
    signature = StandardWebhook(secret).sign("msg_1", stamp, body.decode())
    headers = {
        "webhook-id": "msg_2" if tamper == "id" else "msg_1",
        "webhook-timestamp": str(int(stamp.timestamp())),
        "webhook-signature": signature,
    }
    body = body + b" " if tamper == "body" else body
    key = secret[:-4] + "AAA=" if tamper == "secret" else secret
    theirs: Any
    try:
        theirs = StandardWebhook(key).verify(body, headers)
    except Exception:
        theirs = "refused"
    try:
        ours: Any = verify_webhook(headers, body, key)
    except WebhookVerificationError:
        ours = "refused"
    assert ours == theirs
    assert (ours == "refused") == (tamper != "none")


def test_unavailable_after_retries_when_odiseo_answers_503(tmp_path: Path) -> None:
    """PostgreSQL down: the API answers 503, the client tries max_retries more times."""
    launcher = Launcher(tmp_path)
    url = f"postgresql://postgres@127.0.0.1:{free_port()}/test"
    process = launcher.start(["api", "--no-migrate"], base_env(DATABASE_URL=url, API_KEYS=KEY))
    try:
        process.wait_ready(statuses=frozenset({200, 503}))
        tries: list[int] = []
        hooks = {"response": [lambda r: tries.append(r.status_code)]}
        with Odiseo(process.base_url, KEY, max_retries=2, backoff=0.01) as odiseo:
            odiseo._http.event_hooks = hooks
            with pytest.raises(Unavailable) as gone:
                odiseo.send("a@example.com", "s", text="x")
        assert tries == [503, 503, 503] and gone.value.status == 503
        nowhere = Odiseo("http://127.0.0.1:1", KEY, max_retries=1, backoff=0.01)
        with nowhere, pytest.raises(Unavailable):
            nowhere.get("x")
    finally:
        launcher.stop_all()


async def test_the_async_client(service: Process) -> None:
    async with AsyncOdiseo(service.base_url, KEY, backoff=0.01) as odiseo:
        tag = f"async{uuid.uuid4().hex[:6]}"
        sent = [await odiseo.send(f"a{i}@example.com", "s", text="x", tags=[tag]) for i in range(3)]
        found = [e.message_id async for e in odiseo.search(tag=tag, page_size=2)]
        assert sorted(found) == sorted(a.message_id for a in sent)
        assert (await odiseo.get(sent[0].message_id)).to == ["a0@example.com"]
        assert "welcome" in [t.id for t in await odiseo.templates()]
        with pytest.raises(NotFound):
            await odiseo.get(str(uuid.uuid4()))
        status = await odiseo.queue_status()
        assert status.pending + status.sent + status.processing >= 3


def test_the_client_imports_nothing_of_the_server() -> None:
    """An application installs odiseo-client with httpx alone: nothing of Odiseo's own
    dependencies may be imported by it."""
    shown = subprocess.run(
        [sys.executable, "-c", "import sys, odiseo_client; print(sorted(sys.modules))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    loaded = {name.split(".")[0] for name in ast.literal_eval(shown)}
    assert "httpx" in loaded
    assert not loaded & {"odiseo", "fastapi", "pydantic", "sqlalchemy", "jinja2", "django"}
