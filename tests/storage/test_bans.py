"""The ban stores (sipline.storage.bans): the database table on SQLite and MariaDB,
and Redis keys with pub/sub on a private redis-server."""

from __future__ import annotations

import asyncio
import time

import pytest

from sipline.storage import Database, InvalidValue
from sipline.storage.bans import (
    KEY_PREFIX,
    Ban,
    BanStore,
    DatabaseBans,
    RedisBans,
    ban_address,
)

NOW = 1_800_000_000.0


def ban(address: str, ends_at: float | None, reason: str = "flood", origin: str = "node-a") -> Ban:
    return Ban(address, ends_at, reason, origin, NOW)


async def check_the_store_contract(store: BanStore) -> None:
    """What both stores promise: keep longer bans from nodes, operators replace, lift, expiry."""
    assert await store.add([ban("192.0.2.1", NOW + 300), ban("2001:db8::/64", None)]) == [
        ban("192.0.2.1", NOW + 300),
        ban("2001:db8::/64", None),
    ]
    # A node's shorter (or equal) ban does not shorten what is stored.
    assert await store.add([ban("2001:db8::/64", NOW + 10, origin="node-b")]) == []
    assert await store.add([ban("192.0.2.1", NOW + 300, origin="node-b")]) == []
    # An operator's replaces it, longer or not.
    manual = ban("192.0.2.1", NOW + 60, "manual", "operator")
    assert await store.add([manual], replace=True) == [manual]
    assert await store.active(NOW) == [manual, ban("2001:db8::/64", None)]
    assert await store.active(NOW + 61) == [ban("2001:db8::/64", None)]
    assert await store.remove("2001:db8::/64")
    assert not await store.remove("2001:db8::/64")
    assert await store.active(NOW) == [manual]


async def test_database_bans_keep_lift_and_expire(migrated: Database) -> None:
    store = DatabaseBans(migrated)
    await check_the_store_contract(store)


async def test_database_bans_bump_the_version_on_every_change_only(migrated: Database) -> None:
    store = DatabaseBans(migrated)
    start = await store.version()
    await store.add([ban("192.0.2.1", NOW + 5)])
    assert await store.version() == start + 1
    await store.add([ban("192.0.2.1", NOW + 1)])  # kept as it was: nothing changed
    assert await store.version() == start + 1
    await store.remove("192.0.2.9")
    assert await store.version() == start + 1
    await store.remove("192.0.2.1")
    assert await store.version() == start + 2


async def test_database_bans_in_batches_larger_than_one_statement(migrated: Database) -> None:
    store = DatabaseBans(migrated)
    many = [ban(f"10.{n // 65536}.{n // 256 % 256}.{n % 256}", NOW + 300) for n in range(1200)]
    assert len(await store.add(many)) == 1200
    assert len(await store.add(many)) == 0
    assert len(await store.active(NOW)) == 1200
    assert await store.purge(NOW + 300) == 1200
    assert await store.active(NOW) == []


async def test_redis_bans_keep_lift_and_expire(redis_url: str) -> None:
    store = RedisBans(redis_url)
    try:
        await check_the_store_contract(store)
        # The key of a ban with an end expires with it; a permanent one has no TTL.
        ttl = await store.redis.pttl(KEY_PREFIX + "192.0.2.1") / 1000
        assert abs(ttl - (NOW + 60 - time.time())) < 5
        await store.add([ban("198.51.100.1", None)])
        assert await store.redis.pttl(KEY_PREFIX + "198.51.100.1") == -1
    finally:
        await store.close()


async def test_redis_changes_reach_a_subscriber_in_order(redis_url: str) -> None:
    watcher, operator = RedisBans(redis_url), RedisBans(redis_url)
    changes = await watcher.subscribe()
    try:
        await operator.add([ban("192.0.2.7", None, "manual", "operator")], replace=True)
        await operator.add([ban("192.0.2.7", NOW + 5)])  # kept: not published
        await operator.remove("192.0.2.7")
        seen = [await asyncio.wait_for(changes.next(), 2) for _ in range(2)]
        assert seen == [ban("192.0.2.7", None, "manual", "operator"), "192.0.2.7"]
    finally:
        await changes.close()
        await watcher.close()
        await operator.close()


@pytest.mark.parametrize(
    ("text", "address"),
    [
        ("192.0.2.1", "192.0.2.1"),
        (" 192.0.2.1 ", "192.0.2.1"),
        ("192.0.2.1/32", "192.0.2.1"),
        ("::ffff:192.0.2.1", "192.0.2.1"),
        ("2001:DB8:1:2::99", "2001:db8:1:2::/64"),
        ("2001:db8:1:2::/64", "2001:db8:1:2::/64"),
    ],
)
def test_ban_address_is_what_the_guard_counts_by(text: str, address: str) -> None:
    assert ban_address(text, 64) == address


@pytest.mark.parametrize("text", ["example.com", "192.0.2.0/24", "2001:db8::/48", "", "1.2.3"])
def test_ban_address_refuses_what_no_node_counts_by(text: str) -> None:
    with pytest.raises(InvalidValue, match="bad address"):
        ban_address(text, 64)
