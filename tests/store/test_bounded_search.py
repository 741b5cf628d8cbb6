"""The dashboard's search (`scan`): the same messages as the exact search, in pages
whose work is bounded: creation times become an id range, a tag or recipient is
looked for in windows of `scan` ids, and the cursor walks on until the table ends."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from odiseo.domain.models import EmailFilter
from odiseo.storage.contract import Store
from tests.support.factories import new_email

START = datetime(2026, 3, 1, tzinfo=UTC)


async def fill(store: Store, count: int = 120) -> list[str]:
    """`count` messages a minute apart; every 7th tagged "rare" and sent to rare@x.test."""
    ids = []
    for n in range(count):
        rare = n % 7 == 3
        item = new_email(
            to="rare@x.test" if rare else f"user{n}@x.test", tags=("rare",) if rare else ()
        )
        (done,) = await store.enqueue([item], now=START + timedelta(minutes=n))
        ids.append(done.message_id)
    return ids


async def everything(store: Store, query: EmailFilter, *, scan: int | None) -> list[str]:
    found, before = [], None
    for _ in range(1000):
        page, before = await store.search(query, limit=5, before=before, scan=scan)
        found += [m.message_id for m in page]
        if before is None:
            return found
    raise AssertionError("the cursor never ended")


@pytest.mark.parametrize(
    "query",
    [
        EmailFilter(tag="rare"),
        EmailFilter(recipient="rare@x.test"),
        EmailFilter(created_after=START + timedelta(minutes=30)),
        EmailFilter(created_before=START + timedelta(minutes=90)),
        EmailFilter(
            created_after=START + timedelta(minutes=20),
            created_before=START + timedelta(minutes=70),
            tag="rare",
        ),
        EmailFilter(created_after=START + timedelta(days=1)),
        EmailFilter(created_before=START - timedelta(days=1)),
    ],
)
async def test_bounded_pages_find_what_the_exact_search_finds(
    store: Store, query: EmailFilter
) -> None:
    await fill(store)
    exact = await everything(store, query, scan=None)
    assert await everything(store, query, scan=10) == exact
    assert await everything(store, query, scan=1000) == exact


async def test_a_window_with_no_match_gives_an_empty_page_that_goes_on(store: Store) -> None:
    ids = await fill(store, 30)
    page, before = await store.search(EmailFilter(tag="rare"), limit=5, before=None, scan=4)
    assert page == [] and before is not None  # the newest 4 hold no rare one
    page, before = await store.search(EmailFilter(tag="rare"), limit=5, before=before, scan=4)
    assert [m.message_id for m in page] == [ids[24]]
