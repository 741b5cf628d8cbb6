"""Three `odiseo worker` processes on one PostgreSQL database: no duplicates, no losses."""

from __future__ import annotations

import pytest

from tests.faults.conftest import enqueue_many, message_ids
from tests.support.processes import Launcher, base_env, poll, smtp_env
from tests.support.smtp import SmtpServer

MESSAGES = 3000
WORKERS = 3


@pytest.mark.parametrize("engine", ["postgres"])
def test_three_workers_deliver_each_message_exactly_once(
    launcher: Launcher, database: dict[str, str], smtp_server: SmtpServer
) -> None:
    expected = enqueue_many(database, MESSAGES)
    env = base_env(**database, **smtp_env(smtp_server), EMAIL_WORKER_BATCH_SIZE="50")
    workers = [launcher.start(["worker"], env, name=f"worker-{i}") for i in range(WORKERS)]
    poll(
        lambda: len(smtp_server.received) >= MESSAGES,
        timeout=180,
        interval=0.5,
        what=f"{MESSAGES} deliveries",
    )
    for worker in workers:
        assert worker.terminate() == 0, worker.output()
    counts = message_ids(smtp_server.received)
    assert set(counts) == expected  # zero losses
    assert sum(counts.values()) == MESSAGES  # zero duplicates
    shares = [w.stderr.count("] sent: ") for w in workers]
    assert sum(shares) == MESSAGES
    assert sum(1 for share in shares if share) >= 2, shares  # the work really was shared
    print(f"\n{MESSAGES} messages over {WORKERS} workers: {shares}, 0 duplicates, 0 lost")
