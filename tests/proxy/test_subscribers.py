"""Served domains and the in-memory subscriber directory, kept up with the table (SQLite and MariaDB)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest

from proxy.subscribers import ServedDomains, SubscriberDirectory
from sipline.storage import Database, Subscribers
from tests.proxy.phone import subscriber


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


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


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
    return FakeClock()


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
