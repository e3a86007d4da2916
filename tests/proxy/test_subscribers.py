"""Served domains and the in-memory subscriber directory, kept up with the table (SQLite and MariaDB)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest

from proxy.subscribers import ServedDomains, SubscriberDirectory
from sipline.storage import Database, StorageError, Subscribers
from tests.proxy.phone import subscriber
from tests.support import FakeClock


def test_served_domains_match_without_case_and_aliases_mean_the_first() -> None:
    domains = ServedDomains(["Example.com", "example.net"], ["192.0.2.1", "2001:db8::1"])
    assert domains.canonical("EXAMPLE.COM") == "example.com"
    assert domains.canonical("example.net") == "example.net"
    assert domains.canonical("192.0.2.1") == "example.com"
    assert domains.canonical("[2001:db8::1]") == "example.com"
    assert domains.canonical("evil.org") is None
    with pytest.raises(ValueError):
        ServedDomains([])


def test_a_directory_of_given_subscribers() -> None:
    alice = subscriber("alice@example.com")
    directory = SubscriberDirectory(subscribers=[alice])
    assert directory.get("alice", "EXAMPLE.com") == alice
    assert directory.get("Alice", "example.com") is None  # user parts are case-sensitive
    assert directory.known("alice@example.com") and not directory.known("bob@example.com")
    assert len(directory) == 1



async def until(condition: Callable[[], object], timeout: float = 5.0) -> None:
    for _ in range(int(timeout / 0.005)):
        if condition():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("condition not met in time")


@pytest.fixture
def table(migrated: Database) -> Subscribers:
    return Subscribers(migrated)


@pytest.fixture
async def clock() -> FakeClock:
    return FakeClock(0.0)


@pytest.fixture
async def directory(table: Subscribers, clock: FakeClock) -> AsyncIterator[SubscriberDirectory]:
    await table.add("alice@example.com", "pw")
    found = SubscriberDirectory(table, refresh_interval=0.2, miss_interval=2.0, clock=clock)
    await found.load()
    found.start()
    yield found
    await found.close()


async def test_the_directory_is_loaded_at_start(directory: SubscriberDirectory) -> None:
    alice = directory.get("alice", "example.com")
    assert alice is not None and alice.aor == "alice@example.com"


async def test_a_subscriber_added_later_is_fetched_after_a_miss(
    table: Subscribers, clock: FakeClock
) -> None:
    directory = SubscriberDirectory(table, refresh_interval=3600, miss_interval=2.0, clock=clock)
    directory.start()
    try:
        await table.add("bob@example.com", "pw")
        assert directory.get("bob", "example.com") is None
        await until(lambda: directory.get("bob", "example.com") is not None)
    finally:
        await directory.close()


async def test_misses_are_queried_at_most_once_per_interval(
    table: Subscribers, clock: FakeClock
) -> None:
    directory = SubscriberDirectory(table, refresh_interval=3600, miss_interval=2.0, clock=clock)
    directory.start()
    try:
        assert directory.get("carol", "example.com") is None  # queried: not there yet
        await asyncio.sleep(0.1)
        await table.add("carol@example.com", "pw")
        clock.now += 1.0
        assert directory.get("carol", "example.com") is None  # too soon to ask again
        await asyncio.sleep(0.2)
        assert directory.get("carol", "example.com") is None
        clock.now += 1.5
        directory.get("carol", "example.com")
        await until(lambda: directory.get("carol", "example.com") is not None)
    finally:
        await directory.close()


async def test_the_periodic_reload_drops_removed_subscribers(
    table: Subscribers, directory: SubscriberDirectory
) -> None:
    await table.remove("alice@example.com")
    await until(lambda: not directory.known("alice@example.com"))


async def test_a_failing_reload_keeps_the_view(
    migrated: Database, directory: SubscriberDirectory
) -> None:
    await migrated.execute("ALTER TABLE subscribers RENAME TO subscribers_away")
    await asyncio.sleep(0.5)  # two reloads fail
    assert directory.known("alice@example.com")
    await migrated.execute("ALTER TABLE subscribers_away RENAME TO subscribers")


# -- waiting for a lookup ---------------------------------------------------------------------


async def test_a_lookup_of_a_known_name_needs_no_waiting(directory: SubscriberDirectory) -> None:
    alice = directory.lookup("alice", "example.com")
    assert alice is not None and not isinstance(alice, asyncio.Future)


@pytest.fixture
async def fetching(table: Subscribers, clock: FakeClock) -> AsyncIterator[SubscriberDirectory]:
    """A directory that fetches what it misses, never reloading the whole table."""
    found = SubscriberDirectory(table, refresh_interval=3600, miss_interval=2.0, clock=clock)
    found.start()
    yield found
    await found.close()


async def test_requests_for_a_name_added_later_share_one_wait_for_the_table(
    table: Subscribers, fetching: SubscriberDirectory
) -> None:
    await table.add("bob@example.com", "pw")
    first, second = fetching.lookup("bob", "example.com"), fetching.lookup("bob", "EXAMPLE.com")
    assert isinstance(first, asyncio.Future) and first is second
    found = await asyncio.wait_for(first, 5)
    assert found is not None and found.aor == "bob@example.com"
    assert fetching.lookup("bob", "example.com") == found  # now in the view


async def test_a_name_the_table_lacks_is_none_after_the_wait_and_at_once_for_a_while(
    fetching: SubscriberDirectory, clock: FakeClock
) -> None:
    waiting = fetching.lookup("carol", "example.com")
    assert isinstance(waiting, asyncio.Future)
    assert await asyncio.wait_for(waiting, 5) is None
    assert fetching.lookup("carol", "example.com") is None  # asked a moment ago
    clock.now += 2.0
    assert isinstance(fetching.lookup("carol", "example.com"), asyncio.Future)


async def test_a_table_that_does_not_answer_in_time_fails_the_wait(table: Subscribers) -> None:
    directory = SubscriberDirectory(table, wait=0.05)  # not started: nothing is fetched
    waiting = directory.lookup("bob", "example.com")
    assert isinstance(waiting, asyncio.Future)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(waiting, 5)


async def test_waits_are_bounded_and_closing_ends_them(table: Subscribers) -> None:
    directory = SubscriberDirectory(table, wait=30, max_wanted=2)
    waits = [directory.lookup(name, "example.com") for name in ("a", "b", "c")]
    assert [isinstance(w, asyncio.Future) for w in waits] == [True, True, False]
    await directory.close()
    for waiting in waits[:2]:
        assert isinstance(waiting, asyncio.Future) and isinstance(waiting.exception(), StorageError)


async def test_names_found_missing_are_forgotten_after_the_interval(
    table: Subscribers, clock: FakeClock
) -> None:
    directory = SubscriberDirectory(table, miss_interval=2.0, max_wanted=10_000, clock=clock)
    for n in range(1000):
        directory.get(f"made-up-{n}", "example.com")
    assert len(directory._asked) == 1000
    clock.now += 2.0
    directory.get("one-more", "example.com")
    assert len(directory._asked) == 1
