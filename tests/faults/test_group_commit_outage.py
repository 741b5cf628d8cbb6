"""Group commit: PostgreSQL dies between a group's INSERT and its commit.

`odiseo api` writes the POST /emails requests that arrive while a write is in progress
as one group, in one transaction (storage/grouping.py). Here the database crashes
while such a group's commit runs (its rows inserted, the commit not yet done): every
request of the group must be answered 503, and none of them may be stored.

A deferred constraint trigger, added by the test to its own throwaway cluster, holds
the commits: it runs at COMMIT, after the rows are inserted. An "opener" request's
commit is held (by an advisory lock of the test's) while the other requests arrive, so
they gather into one group; that group's commit is held until the test stops the
cluster ("immediate": a crash, no clean shutdown).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import asyncpg
import httpx

from tests.support.pgcluster import ThrowawayCluster
from tests.support.processes import Launcher, base_env

GROUP = 12
SCHEMA = "odiseo"

HOLD_COMMITS = f"""
CREATE FUNCTION {SCHEMA}.hold_commit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.subject = 'opener' THEN
        PERFORM pg_advisory_xact_lock_shared(1);  -- until the test lets go of it
    ELSIF NEW.subject LIKE 'doomed%' THEN
        -- Seen by the test in pg_stat_activity: how many doomed rows this transaction holds.
        PERFORM set_config('application_name', 'doomed '
            || (SELECT count(*) FROM {SCHEMA}.emails WHERE subject LIKE 'doomed%'), true);
        PERFORM pg_sleep(600);
    END IF;
    RETURN NULL;
END $$;
CREATE CONSTRAINT TRIGGER hold_commit AFTER INSERT ON {SCHEMA}.emails
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION {SCHEMA}.hold_commit();
"""
WAITING_FOR_THE_GATE = (
    "SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND wait_event = 'advisory'"
)
HELD_GROUPS = "SELECT application_name FROM pg_stat_activity WHERE application_name LIKE 'doomed%'"


async def rows(url: str, query: str) -> list[str]:
    """The first column of each row the query returns."""
    conn = await asyncpg.connect(url, timeout=10)
    try:
        return [r[0] for r in await conn.fetch(query)]
    finally:
        await conn.close()


async def post(http: httpx.AsyncClient, subject: str) -> httpx.Response:
    body = {"to": ["someone@example.com"], "subject": subject, "body": "b"}
    return await http.post("/emails", json=body)


async def until(check: Callable[[], Awaitable[bool]], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def test_a_group_cut_off_before_its_commit_is_refused_and_stores_nothing(
    launcher: Launcher, cluster: ThrowawayCluster
) -> None:
    env = base_env(DATABASE_URL=cluster.url, SCHEMA_NAME=SCHEMA)
    api = launcher.start(["api"], env)
    api.wait_ready(timeout=90)  # a busy machine starts it slowly
    gate = await asyncpg.connect(cluster.url, timeout=10)
    await gate.execute(HOLD_COMMITS)
    await gate.execute("SELECT pg_advisory_lock(1)")  # holds the opener's commit
    limits = httpx.Limits(max_connections=GROUP + 1)
    async with httpx.AsyncClient(base_url=api.base_url, timeout=60, limits=limits) as http:
        opener = asyncio.ensure_future(post(http, "opener"))

        async def opener_held() -> bool:
            return len(await rows(cluster.url, WAITING_FOR_THE_GATE)) == 1

        await until(opener_held, "the opener's commit held")
        doomed = [asyncio.ensure_future(post(http, f"doomed {i}")) for i in range(GROUP)]
        await asyncio.sleep(3)  # every request reaches the API, which holds it for the next group
        await gate.close()  # lets the opener commit
        assert (await opener).status_code == 202, (await opener).text

        async def group_held() -> bool:
            seen.append(await rows(cluster.url, HELD_GROUPS))
            return seen[-1] == [f"doomed {GROUP}"]

        seen: list[list[str]] = []
        # One transaction holds all of them: the requests were written as one group.
        try:
            await until(group_held, f"one commit of {GROUP} rows held")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; held instead: {seen[-3:]}") from None
        cluster.stop("immediate")
        started = time.monotonic()
        answers = await asyncio.gather(*doomed)
        took = time.monotonic() - started

    assert [a.status_code for a in answers] == [503] * GROUP, [a.text for a in answers]
    assert all("database" in a.json()["detail"] for a in answers)
    assert took < 15, took
    assert api.popen.poll() is None, api.output()

    cluster.start()
    assert await rows(cluster.url, f"SELECT subject FROM {SCHEMA}.emails") == ["opener"]
    assert "Traceback" not in api.stderr, api.output()
