"""A real bounce end to end, as an operator runs it: `odiseo run` with BOUNCE_DOMAIN and
BOUNCE_LISTEN_PORT sends through a private Postfix (tests/support/postfix.py), which
takes the message, fails it for good and sends its own DSN to Odiseo's bounce
listener; the API shows email.bounced and the suppression, and a webhook receiver
gets the event signed (verified with `standardwebhooks`)."""

from __future__ import annotations

import time
from typing import Any

import httpx

from odiseo.domain.verp import ReturnPaths
from tests.support.postfix import DEAD_DOMAIN, private_postfix
from tests.support.processes import Launcher, base_env
from tests.support.receiver import Receiver
from tests.support.smtp import free_port

BOUNCE_DOMAIN = "bounce.odiseo.test"
SECRET = "an operator's bounce secret, 32+"


def poll(http: httpx.Client, path: str, *, what: str, log: Any) -> Any:
    """GET `path` until it lists something (a liveness bound, not a measurement)."""
    deadline = time.monotonic() + 60
    while True:
        items = http.get(path).json()["items"]
        if items:
            return items
        assert time.monotonic() < deadline, f"no {what}; Postfix's log:\n{log()}"
        time.sleep(0.2)


def test_odiseo_run_reads_postfix_bounce(
    launcher: Launcher,
    sqlite_database: dict[str, str],
    receiver: Receiver,
) -> None:
    bounce_port = free_port()
    with private_postfix(bounce_domain=BOUNCE_DOMAIN, bounce_port=bounce_port) as mta:
        env = base_env(
            **sqlite_database,
            SMTP_HOST="127.0.0.1",
            SMTP_PORT=str(mta.port),
            SMTP_USE_TLS="false",
            BOUNCE_DOMAIN=BOUNCE_DOMAIN,
            BOUNCE_SECRET=SECRET,
            BOUNCE_LISTEN_PORT=str(bounce_port),
            WEBHOOK_ALLOW_PRIVATE="true",
            WEBHOOK_POLL_INTERVAL="0.2",
        )
        service = launcher.start(["run"], env)
        service.wait_ready()
        with service.client() as http:
            hook = http.post("/webhooks", json={"url": receiver.url, "events": ["email.bounced"]})
            assert hook.status_code == 201, hook.text
            gone = f"nobody@{DEAD_DOMAIN}"
            sent = http.post("/emails", json={"to": [gone], "subject": "Hi", "body": "<p>b</p>"})
            assert sent.status_code == 202, sent.text
            message_id = sent.json()["message_id"]

            (event,) = poll(http, "/events?type=email.bounced", what="email.bounced", log=mta.log)
            suppression = http.get(f"/suppressions/{gone}")
        log = mta.log()
        output = service.output()

    assert (
        f"from=<{ReturnPaths(domain=BOUNCE_DOMAIN, secret=SECRET.encode()).address(message_id)}>"
        in log
    )
    assert "sender non-delivery notification" in log, log
    assert event["message_id"] == message_id and event["recipient"] == gone, event
    assert event["data"]["source"] == "dsn" and event["data"]["status"] == "5.1.1"
    assert suppression.status_code == 200, suppression.text
    assert suppression.json()["reason"] == "hard_bounce"
    deadline = time.monotonic() + 60
    while not receiver.hits:
        assert time.monotonic() < deadline, f"no webhook; odiseo's output:\n{output}"
        time.sleep(0.1)
    body = receiver.hits[0].verify(hook.json()["secret"])
    assert body["type"] == "email.bounced"
    assert body["data"]["message_id"] == message_id and body["data"]["recipient"] == gone
    assert SECRET not in output  # never logged
