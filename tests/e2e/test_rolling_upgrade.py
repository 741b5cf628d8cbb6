"""Rolling upgrade from 1.0.0 (issue 15 point 7): the schema is upgraded under a running
1.0.0 `odiseo run`, a current worker and API start beside it, and every message, queued
through either version before, during and after the upgrade, reaches the relay once.

1.0.0 is installed from this repository's history (tests/support/release.py) into a venv
of its own, once per test session.
"""

from __future__ import annotations

import collections
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from tests.support.processes import Launcher, Process, base_env, poll, smtp_env
from tests.support.release import RELEASE_1_0_0, Release, install_release
from tests.support.smtp import SmtpServer, free_port

pytestmark = pytest.mark.e2e

# Due-now messages per wave; a few more wait until after the old process has stopped.
WAVE = 15
LATER = 5
LATER_SECONDS = 15
SUBMIT_KEY = "upgrade-test-key-0123456789:send"


@pytest.fixture(scope="session")
def release_1_0(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Release]:
    yield install_release(RELEASE_1_0_0, tmp_path_factory.mktemp("release-1.0.0"))


def queue(http: httpx.Client, label: str, **extra: object) -> str:
    """POST one email; its message_id."""
    body = {"to": [f"{label}@example.com"], "subject": label, "body": f"<p>{label}</p>", **extra}
    answer = http.post("/emails", json=body)
    assert answer.status_code in (200, 202), answer.text
    return str(answer.json()["message_id"])


def queue_wave(process: Process, label: str) -> list[str]:
    with process.client() as http:
        return [queue(http, f"{label}-{n}") for n in range(WAVE)]


def delivered(smtp_server: SmtpServer) -> collections.Counter[str]:
    """How often the relay accepted each Message-ID (its local part is our message_id)."""
    return collections.Counter(
        str(item.message["Message-ID"]).strip("<>").split("@", 1)[0]
        for item in list(smtp_server.received)
    )


def test_rolling_upgrade_from_1_0_delivers_every_message_once(
    release_1_0: Release,
    launcher: Launcher,
    database: dict[str, str],
    smtp_server: SmtpServer,
    tmp_path: Path,
) -> None:
    env = base_env(**database, **smtp_env(smtp_server), EMAIL_WORKER_POLL_INTERVAL="0.2")
    old = launcher.start(["run"], env, name="old-run", program=release_1_0.odiseo)
    old.wait_ready()
    with old.client() as http:
        assert http.get("/health").json()["version"] == "1.0.0"
        later = (datetime.now(UTC) + timedelta(seconds=LATER_SECONDS)).isoformat()
        waiting = [queue(http, f"later-{n}", send_at=later) for n in range(LATER)]
        keyed = queue(http, "keyed", client_message_id="upgrade-key-1")
    before = queue_wave(old, "before")

    # The upgrade, while 1.0.0 runs: migrate, then a current worker and API beside it.
    migrate = launcher.run(["migrate"], env, timeout=120)
    assert migrate.popen.returncode == 0, migrate.output()
    assert "contract step pending (c001)" in migrate.stderr, migrate.output()
    # SMTP submission waits for the contract step: a 1.0.0 worker would send its
    # messages (kept as bytes 1.0.0 does not read) with an empty body.
    smtp_env_ = {**env, "SMTP_SUBMISSION_PORT": str(free_port()), "API_KEYS": SUBMIT_KEY}
    refused = launcher.run(["smtp"], smtp_env_, timeout=60)
    assert refused.popen.returncode != 0, refused.output()
    assert "SMTP submission waits for it" in refused.stderr, refused.output()
    new_env = {**env, "API_PORT": base_env()["API_PORT"]}
    worker = launcher.start(["worker", "--no-migrate"], new_env, name="new-worker")
    api = launcher.start(["api", "--no-migrate"], new_env, name="new-api")
    api.wait_ready()

    during_old = queue_wave(old, "during-old")
    during_new = queue_wave(api, "during-new")
    for process in (old, api):  # the key stored by 1.0.0 is known to both versions
        with process.client() as http:
            again = http.post(
                "/emails",
                json={
                    "to": ["keyed@example.com"],
                    "subject": "keyed",
                    "body": "<p>keyed</p>",
                    "client_message_id": "upgrade-key-1",
                },
            )
            assert (again.status_code, again.json().get("message_id")) == (200, keyed), (
                again.text + process.output()
            )
    now_due = [keyed, *before, *during_old, *during_new]
    poll(
        lambda: set(now_due) <= set(delivered(smtp_server)),
        timeout=60,
        what="the due messages at the relay",
    )
    with old.client() as http:  # 1.0.0 still reads the upgraded tables
        counts = http.get("/queue/status")
        assert counts.status_code == 200, counts.text + old.output()
        for message_id in (keyed, during_new[0]):
            shown = http.get(f"/emails/{message_id}")
            assert shown.status_code == 200, shown.text + old.output()
            assert shown.json()["status"] == "sent"

    # The roll ends: 1.0.0 stops; what it queued for later goes out through the new worker.
    assert old.terminate() == 0, old.output()
    after = queue_wave(api, "after")
    expected = [*now_due, *waiting, *after]
    poll(
        lambda: set(expected) <= set(delivered(smtp_server)),
        timeout=LATER_SECONDS + 60,
        what="every message at the relay",
    )
    with api.client() as http:
        poll(
            lambda: http.get("/queue/status").json()["processing"] == 0,
            timeout=30,
            what="no message in processing",
        )
        workers = {
            event["worker"].split(":")[1]
            for message_id in expected
            for event in http.get(f"/emails/{message_id}").json()["events"]
            if event["worker"] and event["kind"] == "sent"
        }
    counted = delivered(smtp_server)
    assert {m: n for m, n in counted.items() if n != 1} == {}, "delivered more than once"
    assert set(counted) == set(expected), "delivered something never queued"
    assert str(worker.popen.pid) in workers, (workers, worker.output())
    for process in (worker, api):
        assert process.popen.poll() is None, process.output()
    # No 1.0.0 process is left: the contract step.
    contract = launcher.run(["migrate", "--contract"], env, timeout=120)
    assert contract.popen.returncode == 0, contract.output()
    assert "contract step pending" not in contract.stderr, contract.output()
