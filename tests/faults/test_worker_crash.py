"""kill -9 of workers at random points: nothing is lost, and what is sent twice is bounded.

The worker records each result a database round trip after its SMTP reply and holds
at most 2 x SMTP_POOL_SIZE messages between starting an SMTP transaction and having
its result committed (worker.py). So a kill -9 at any instant can make at most that
many messages go out again; here ten kills at random points, on both stores, and
kills just after a database outage ends, each counted on its own.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable

import pytest

from tests.faults.conftest import enqueue_many, message_ids
from tests.support.pgcluster import ThrowawayCluster
from tests.support.processes import Launcher, Process, base_env, poll, smtp_env
from tests.support.smtp import Received, SmtpServer

POOL = 4
BATCH = 20
BOUND = 2 * POOL


def _env(database: dict[str, str], smtp_server: SmtpServer, *, lease: float) -> dict[str, str]:
    return base_env(
        **database,
        **smtp_env(smtp_server),
        SMTP_POOL_SIZE=str(POOL),
        EMAIL_WORKER_BATCH_SIZE=str(BATCH),
        EMAIL_WORKER_LEASE_SECONDS=str(lease),  # a killed worker's mail is retaken after it
        EMAIL_WORKER_POLL_INTERVAL="0.1",
        EMAIL_WORKER_DB_RETRY_SECONDS="0.25",
    )


def _kill(victim: Process, received: list[Received]) -> int:
    """SIGKILL: no clean-up, claims left behind; how many deliveries there were by then."""
    victim.popen.kill()
    victim.popen.wait(10)
    return len(received)


def duplicates_per_kill(received: list[Received], kills: list[int]) -> list[int]:
    """How many messages each kill made go out again: a message delivered twice counts
    against the first kill after its first delivery (its result was not yet recorded)."""
    first: dict[str, int] = {}
    per_kill = [0] * len(kills)
    for index, item in enumerate(received):
        message_id = str(item.message["Message-ID"])
        if message_id not in first:
            first[message_id] = index
            continue
        later_kills = [k for k, at in enumerate(kills) if at > first[message_id]]
        if later_kills and message_id in first:
            per_kill[later_kills[0]] += 1
            first[message_id] = len(received)  # a third copy would be another kill's
    return per_kill


def _drain(launcher: Launcher, env: dict[str, str], smtp: SmtpServer, expected: set[str]) -> None:
    launcher.start(["worker"], env, name="survivor")
    poll(
        lambda: set(message_ids(smtp.received)) >= expected,
        timeout=180,
        what="every message delivered",
    )


@pytest.mark.parametrize("engine", ["sqlite", "postgres"], indirect=False)
def test_ten_kills_at_random_points_repeat_at_most_two_pools_each(
    launcher: Launcher, database: dict[str, str], smtp_server: SmtpServer, engine: str
) -> None:
    expected = enqueue_many(database, 800)
    smtp_server.handler.data_delay = 0.01  # every SMTP transaction takes a while
    env = _env(database, smtp_server, lease=1)
    received = smtp_server.received
    rng = random.Random()
    kills = []
    for number in range(10):
        victim = launcher.start(["worker"], env, name=f"victim{number}")
        poll(_grew(received, len(received) + rng.randint(0, 59)), timeout=60, what="deliveries")
        time.sleep(rng.random() * 0.05)  # anywhere in a transaction or a write
        kills.append(_kill(victim, received))
    _drain(launcher, env, smtp_server, expected)
    per_kill = duplicates_per_kill(received, kills)
    counts = message_ids(received)
    assert set(counts) == expected  # nothing lost
    assert max(per_kill) <= BOUND, (per_kill, kills)
    print(f"\n[{engine}] duplicates per kill: {per_kill} (bound {BOUND}), kills at {kills}")


def test_kills_just_after_a_database_outage_repeat_at_most_two_pools_each(
    launcher: Launcher, cluster: ThrowawayCluster, smtp_server: SmtpServer
) -> None:
    """A worker draining a backlog meets an outage: it may not pile up unrecorded results
    while the database is away, so a kill the moment it is back costs no more than one at
    any other time."""
    database = {"DATABASE_URL": cluster.url, "SCHEMA_NAME": "odiseo"}
    expected = enqueue_many(database, 600)
    smtp_server.handler.data_delay = 0.005
    # Leases outlast the outage (an outage longer than a lease lets any worker, this one
    # included, take the messages again: at-least-once, as the README says).
    env = _env(database, smtp_server, lease=10)
    received = smtp_server.received
    kills = []
    for number in range(3):
        victim = launcher.start(["worker"], env, name=f"victim{number}")
        poll(_grew(received, len(received) + 29), timeout=60, what="deliveries before the outage")
        cluster.stop("immediate")
        time.sleep(2)  # the worker keeps sending what it holds, then waits
        cluster.start()
        resumed = len(received)
        poll(_grew(received, resumed), timeout=60, what="deliveries after the outage")
        kills.append(_kill(victim, received))
    _drain(launcher, env, smtp_server, expected)
    per_kill = duplicates_per_kill(received, kills)
    assert set(message_ids(received)) == expected
    assert max(per_kill) <= BOUND, (per_kill, kills)
    print(f"\n[outage] duplicates per kill: {per_kill} (bound {BOUND})")


def _grew(received: list[Received], size: int) -> Callable[[], bool]:
    return lambda: len(received) > size
