"""Three `odiseo worker` processes on one PostgreSQL database: no duplicates, no losses."""

from __future__ import annotations

import pytest

from odiseo.config import Settings
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


LIMITED = 300
PER_SECOND = 20
POOL = Settings.model_fields["smtp_pool_size"].default  # SMTP_POOL_SIZE's default


@pytest.mark.parametrize("engine", ["postgres"])
def test_three_workers_share_one_relay_limit(
    launcher: Launcher, database: dict[str, str], smtp_server: SmtpServer
) -> None:
    """SMTP_MAX_PER_SECOND=20 over three `odiseo worker` processes: no fixed second
    starts more than 20, so no second at all — any second, not only those the limit
    counts in — sees more than the limit plus the documented burst (README, "Rate
    limits"): the next window's 20, and what was already inside an SMTP transaction
    (SMTP_POOL_SIZE per worker)."""
    expected = enqueue_many(database, LIMITED)
    env = base_env(
        **database,
        **smtp_env(smtp_server),
        SMTP_MAX_PER_SECOND=str(PER_SECOND),
        EMAIL_WORKER_BATCH_SIZE="50",
        EMAIL_WORKER_POLL_INTERVAL="0.2",
    )
    workers = [launcher.start(["worker"], env, name=f"limited-{i}") for i in range(WORKERS)]
    poll(lambda: len(smtp_server.received) >= LIMITED, timeout=120, interval=0.2, what="all")
    for worker in workers:
        assert worker.terminate() == 0, worker.output()
    assert set(message_ids(smtp_server.received)) == expected
    times = sorted(r.at for r in smtp_server.received)
    busiest = max(sum(1 for t in times[i:] if t < start + 1.0) for i, start in enumerate(times))
    assert busiest <= 2 * PER_SECOND + WORKERS * POOL, busiest
    # 300 messages at 20 a second fill 15 windows: from the last instant of the first to
    # the first instant of the last is at least 13 s, however the windows fall.
    assert times[-1] - times[0] >= LIMITED / PER_SECOND - 2
    shares = [w.stderr.count("] sent: ") for w in workers]
    assert sum(1 for share in shares if share) >= 2, shares
    print(
        f"\n{LIMITED} messages at {PER_SECOND}/s over {WORKERS} workers: busiest second "
        f"{busiest}, {times[-1] - times[0]:.1f} s, shares {shares}"
    )
