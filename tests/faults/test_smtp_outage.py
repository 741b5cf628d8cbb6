"""An SMTP outage shorter than the retry budget: nothing fails, all is delivered after it."""

from __future__ import annotations

from typing import Any

from tests.support.processes import Launcher, base_env, poll
from tests.support.smtp import SmtpServer, free_port

MESSAGES = 20


def test_outage_shorter_than_retry_budget(
    launcher: Launcher, sqlite_database: dict[str, str]
) -> None:
    port = free_port()  # nothing listens here yet: connection refused
    env = base_env(
        **sqlite_database,
        SMTP_HOST="127.0.0.1",
        SMTP_PORT=str(port),
        SMTP_USE_TLS="false",
        EMAIL_RETRY_BACKOFF_SECONDS="1",
        EMAIL_RETRY_MAX_ATTEMPTS="6",  # 1+2+4+8+16+32 s of budget
        EMAIL_WORKER_POLL_INTERVAL="0.2",
    )
    service = launcher.start(["run"], env)
    service.wait_ready()
    with service.client() as http:
        ids = []
        for i in range(MESSAGES):
            response = http.post(
                "/emails", json={"to": [f"u{i}@example.com"], "subject": "s", "body": "<p>b</p>"}
            )
            assert response.status_code == 202
            ids.append(response.json()["message_id"])

        def queue() -> dict[str, Any]:
            return dict(http.get("/queue/status").json())

        # Every message has failed at least once and waits for a retry; none has failed for good.
        poll(lambda: queue()["scheduled"] == MESSAGES, timeout=30, what="all scheduled")
        with SmtpServer(port=port) as server:
            server.wait_for(MESSAGES, timeout=60)
            poll(lambda: queue()["sent"] == MESSAGES, timeout=30, what="all recorded sent")
        assert queue()["failed"] == 0
        history = http.get(f"/emails/{ids[0]}").json()
        kinds = [event["kind"] for event in history["events"]]
        assert kinds[-1] == "sent" and "retry" in kinds, kinds
        assert (
            "Connection refused"
            in next(e["response"] for e in history["events"] if e["kind"] == "retry")
            or "cannot reach" in history["events"][0]["response"]
        )
