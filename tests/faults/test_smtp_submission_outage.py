"""PostgreSQL stopped under SMTP submission: DATA is answered 451 (the client keeps its
message and tries again), nothing the listener accepted is lost, and the retry after the
database returns is delivered once.

Runs against a cluster this test creates and breaks itself, never the shared server.
"""

from __future__ import annotations

import smtplib
from collections import Counter

from tests.support.app import API_KEYS, SEND_KEY
from tests.support.pgcluster import ThrowawayCluster
from tests.support.processes import Launcher, base_env, smtp_env
from tests.support.smtp import SmtpServer, free_port


def submit(port: int, subject: str) -> tuple[int, str]:
    """One message over plaintext AUTH (a loopback listener allows it); the DATA reply."""
    data = (
        f"From: app@odiseo.io\r\nTo: to@example.com\r\nSubject: {subject}\r\n\r\nbody\r\n"
    ).encode()
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.login("apikey", SEND_KEY)
        client.mail("app@odiseo.io")
        client.rcpt("to@example.com")
        code, text = client.data(data)
        return code, text.decode()


def test_database_down_is_451_and_nothing_is_lost(
    launcher: Launcher, cluster: ThrowawayCluster, smtp_server: SmtpServer
) -> None:
    port = free_port()
    env = base_env(
        DATABASE_URL=cluster.url,
        SCHEMA_NAME="odiseo",
        EMAIL_WORKER_DB_RETRY_SECONDS="0.25",
        EMAIL_WORKER_LEASE_SECONDS="5",  # a claim whose answer the outage lost is retaken soon
        API_KEYS=API_KEYS,
        SMTP_FROM_EMAIL="app@odiseo.io",
        SMTP_SUBMISSION_PORT=str(port),
        **smtp_env(smtp_server),
    )
    service = launcher.start(["run"], env)
    service.wait_ready()
    service.wait_for_log("SMTP submission listening on")

    code, reply = submit(port, "before")
    assert code == 250, reply
    smtp_server.handler.wait_for(1, timeout=30)  # delivered: its claim is not caught below

    cluster.stop("immediate")
    code, reply = submit(port, "during")
    assert code == 451 and "database unavailable" in reply, reply
    assert service.popen.poll() is None, service.output()

    cluster.start()
    service.wait_ready(timeout=30)
    code, reply = submit(port, "during")  # the client's retry
    assert code == 250, reply

    try:
        received = smtp_server.handler.wait_for(2, timeout=60)
    except AssertionError as exc:
        raise AssertionError(f"{exc}{service.output()}") from None
    subjects = Counter(str(r.message["Subject"]) for r in received)
    assert subjects == Counter({"before": 1, "during": 1}), subjects
    assert "Traceback" not in service.stderr, service.output()
