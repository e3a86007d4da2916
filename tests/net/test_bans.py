"""Bans shared between nodes (sipline.net.bans): guards on fake clocks, sharing
through a real database (SQLite and MariaDB) or a real Redis."""

from __future__ import annotations

import logging

import pytest

from sipline.config import LimitsSection
from sipline.net.bans import BanSync
from sipline.net.guard import FOREVER, Guard
from sipline.net.ports import free_port
from sipline.sip.address import Address
from sipline.storage import Database
from sipline.storage.bans import Ban, DatabaseBans, RedisBans
from tests.support import FakeClock, until

FLOODER = Address("UDP", "203.0.113.7", 5060)
WALL = 1_800_000_000.0



def node(store: object, name: str, clock: FakeClock | None = None) -> BanSync:
    limits = LimitsSection(flood_density=10, flood_ban=300.0, ban_poll=5.0)
    guard = Guard(limits=limits, clock=clock or FakeClock(100.0))
    return BanSync(guard, store, name, poll=limits.ban_poll, wall=lambda: WALL)  # type: ignore[arg-type]


def flood(sync: BanSync) -> None:
    for _ in range(11):
        sync.guard.admit(FLOODER)
    assert FLOODER.host in sync.guard.banned


async def test_without_a_store_bans_stay_in_process_and_the_guard_is_pruned() -> None:
    clock = FakeClock(100.0)
    sync = node(None, "a", clock)
    flood(sync)
    await sync.tick()
    assert sync.guard.made == []
    clock.now += 301
    await sync.tick()
    assert sync.guard.banned == {} and sync.guard._windows == {}


async def test_a_ban_reaches_other_nodes_through_the_database(migrated: Database) -> None:
    a, b = node(DatabaseBans(migrated), "a"), node(DatabaseBans(migrated), "b", FakeClock(5000.0))
    await a.start()
    await b.start()
    try:
        flood(a)
        await a.tick()
        assert await DatabaseBans(migrated).active(WALL) == [
            Ban(FLOODER.host, WALL + 300.0, "flood", "a", WALL)
        ]
        await b.tick()  # polls at once the first time, then every ban_poll seconds
        assert b.guard.banned == {FLOODER.host: 5000.0 + 300.0}
        assert not b.guard.admit(FLOODER)
        # An operator lifts it: the other node sees it at its next poll, not before.
        await DatabaseBans(migrated).remove(FLOODER.host)
        b.guard.clock.now += 1  # type: ignore[attr-defined]
        await b.tick()
        assert FLOODER.host in b.guard.banned
        b.guard.clock.now += 5  # type: ignore[attr-defined]
        await b.tick()
        assert b.guard.banned == {}
        assert b.guard.admit(FLOODER)
    finally:
        await a.stop()
        await b.stop()


async def test_a_node_that_starts_applies_the_bans_in_force(migrated: Database) -> None:
    await DatabaseBans(migrated).add(
        [Ban("192.0.2.1", None, "manual", "operator", WALL), Ban("192.0.2.2", WALL - 1, "flood", "x", WALL - 301)]
    )
    sync = node(DatabaseBans(migrated), "a")
    await sync.start()
    try:
        assert sync.guard.banned == {"192.0.2.1": FOREVER}
    finally:
        await sync.stop()


async def test_bans_made_while_the_store_is_away_are_written_when_it_is_back(
    caplog: pytest.LogCaptureFixture, redis_url: str
) -> None:
    caplog.set_level(logging.INFO, "sipline.guard")
    away = RedisBans(f"redis://127.0.0.1:{free_port()}/0")
    sync = node(away, "a")
    flood(sync)
    await sync.tick()
    await sync.tick()
    assert [b.key for b in sync.guard.made] == [FLOODER.host]  # kept for the next try
    unavailable = [r for r in caplog.records if "ban_store_unavailable" in r.getMessage()]
    assert len(unavailable) == 1  # logged once, not at every try
    await away.close()
    sync.store = RedisBans(redis_url)
    await sync.tick()
    assert sync.guard.made == []
    assert any("ban_store_recovered" in r.getMessage() for r in caplog.records)
    assert [b.address for b in await sync.store.active(WALL)] == [FLOODER.host]
    await sync.stop()


async def test_a_ban_reaches_other_nodes_at_once_through_redis(redis_url: str) -> None:
    a, b = node(RedisBans(redis_url), "a"), node(RedisBans(redis_url), "b", FakeClock(5000.0))
    await a.start()
    await b.start()
    try:
        assert b.synced.is_set()  # started once subscribed and the bans in force read
        flood(a)
        await a.tick()
        await until(lambda: FLOODER.host in b.guard.banned, 2)
        assert b.guard.banned[FLOODER.host] == 5000.0 + 300.0
        # A node started later reads it from its key.
        c = node(RedisBans(redis_url), "c", FakeClock(7.0))
        await c.start()
        assert c.guard.banned[FLOODER.host] == 7.0 + 300.0
        # An operator lifts it: every node at once.
        operator = RedisBans(redis_url)
        assert await operator.remove(FLOODER.host)
        await operator.close()
        await until(lambda: FLOODER.host not in b.guard.banned, 2)
        await until(lambda: FLOODER.host not in c.guard.banned, 2)
        assert FLOODER.host not in a.guard.banned
        await c.stop()
    finally:
        await a.stop()
        await b.stop()
