"""PostgreSQL stopped under load: quick 503s, workers survive, nothing accepted is lost.

Runs against a cluster this test creates and breaks itself, never the shared server.
"""

from __future__ import annotations

import time

import httpx

from tests.faults.conftest import message_ids
from tests.support.pgcluster import ThrowawayCluster
from tests.support.processes import Launcher, base_env, poll, smtp_env
from tests.support.smtp import SmtpServer

BEFORE = 30
AFTER = 10


def post(http: httpx.Client, i: int) -> httpx.Response:
    return http.post("/emails", json={"to": [f"u{i}@example.com"], "subject": f"n{i}", "body": "b"})


def test_database_outage(
    launcher: Launcher, cluster: ThrowawayCluster, smtp_server: SmtpServer
) -> None:
    smtp_server.handler.data_delay = 0.05
    env = base_env(
        DATABASE_URL=cluster.url,
        SCHEMA_NAME="odiseo",
        EMAIL_WORKER_DB_RETRY_SECONDS="0.25",  # no test waits on the 2 s default
        **smtp_env(smtp_server),
    )
    service = launcher.start(["run"], env)
    service.wait_ready()
    with service.client(timeout=15) as http:
        accepted = []
        for i in range(BEFORE):
            response = post(http, i)
            assert response.status_code == 202, response.text
            accepted.append(response.json()["message_id"])

        cluster.stop("immediate")  # a crash, mid-delivery
        started = time.monotonic()
        refused = post(http, 999)
        took = time.monotonic() - started
        assert refused.status_code == 503, refused.text
        assert "database" in refused.json()["detail"] and "Traceback" not in refused.text
        assert took < 10, took
        health = http.get("/health")
        assert health.status_code == 503 and health.json()["db"] == "unreachable"
        time.sleep(3)  # the worker meets the outage too
        assert service.popen.poll() is None, service.output()

        cluster.start()
        outage_ended = time.monotonic()
        service.wait_ready(timeout=30)
        for i in range(BEFORE, BEFORE + AFTER):
            response = post(http, i)
            assert response.status_code == 202, response.text
            accepted.append(response.json()["message_id"])

        def all_sent() -> bool:
            return bool(http.get("/queue/status").json()["sent"] == BEFORE + AFTER)

        try:
            poll(all_sent, timeout=90, interval=0.5, what="every accepted message sent")
        except AssertionError as exc:  # where they are: e.g. a claim committed as the crash
            # came, its answer lost, would stay processing for the whole lease (300 s)
            queue = http.get("/queue/status").json()
            raise AssertionError(f"{exc}; queue {queue}{service.output()}") from None
        recovered = time.monotonic() - outage_ended
    subjects = {r.message["Subject"] for r in smtp_server.received}
    assert subjects >= {f"n{i}" for i in range(BEFORE + AFTER)}
    assert "n999" not in subjects
    counts = message_ids(smtp_server.received)
    duplicates = sum(counts.values()) - len(counts)
    assert "Traceback" not in service.stderr, service.output()
    print(f"\nrecovered {recovered:.1f} s after PostgreSQL returned; {duplicates} duplicates")
