"""The location feed between proxies: a real Redis, one database (SQLite and MariaDB)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import pytest

from proxy.feed import LocationFeed
from proxy.location import Binding, Location
from proxy.location_store import LocationStore
from proxy.writer import BindingWriter, Change
from sipline.sip.address import Address
from sipline.storage import Database, migrate, open_database
from sipline.storage.live import open_redis
from tests.proxy.support import until

ALICE = "alice@example.com"


def binding(contact: str = "sip:alice@192.0.2.1:5060", node: str = "a", **fields: object) -> Binding:
    values: dict[str, object] = {
        "aor": ALICE, "contact": contact, "expires_at": time.time() + 3600,
        "call_id": "c1@phone", "cseq": 1, "source": Address("UDP", "198.51.100.7", 40312),
        "node": node, "updated_at": time.time(), "proxy": "127.0.0.1:5060",
    }  # fmt: skip
    values.update(fields)
    return Binding(**values)  # type: ignore[arg-type]


@dataclass
class Proxy:
    """What of a proxy the feed touches: its store, writer, location and feed."""

    db: Database
    store: LocationStore
    location: Location
    feed: LocationFeed
    writer: BindingWriter

    async def commit(self, upserts: list[Binding], removals: tuple = ()) -> int:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        change = Change(upserts, removals, lambda error: done.set_result(error))
        self.writer.submit(change)
        assert await done is None
        self.location.apply(upserts, [(r.aor, r.contact) for r in removals], change.version)
        return change.version


@asynccontextmanager
async def proxy(url: str, redis_url: str | None, name: str, **feed: float) -> AsyncIterator[Proxy]:
    db = await open_database(url)
    store = LocationStore(db, name)
    location = Location()
    redis = open_redis(redis_url) if redis_url else None
    feed_ = LocationFeed(store, location, redis, **feed)  # type: ignore[arg-type]
    writer = BindingWriter(store, 500, 1.0, feed_.committed)
    location.forgetter = writer
    await feed_.load()
    feed_.start()
    writer.start()
    try:
        yield Proxy(db, store, location, feed_, writer)
    finally:
        await writer.close()
        await feed_.close()
        await db.close()


@pytest.fixture
async def url(database_url: str) -> str:
    db = await open_database(database_url)
    await migrate(db)
    await db.close()
    return database_url


def held(p: Proxy) -> list[str]:
    return [b.contact for b in p.location.lookup(ALICE, time.time())]


async def test_a_binding_one_proxy_stores_is_seen_by_the_other_at_once(
    url: str, redis_url: str
) -> None:
    async with proxy(url, redis_url, "a") as a, proxy(url, redis_url, "b", interval=60) as b:
        await until(lambda: a.feed.in_sync and b.feed.in_sync)
        started = time.monotonic()
        await a.commit([binding()])
        await until(lambda: held(b) == ["sip:alice@192.0.2.1:5060"], timeout=2)
        # Through the feed, not the safety poll (every 60 s here).
        assert time.monotonic() - started < 0.5
        assert b.feed.last == a.feed.last
        (seen,) = b.location.lookup(ALICE, time.time())
        assert seen.proxy == "127.0.0.1:5060" and seen.node == "a" and seen.version == a.feed.last


async def test_a_removal_reaches_the_other_proxy_as_a_tombstone(url: str, redis_url: str) -> None:
    from proxy.location_store import Removal

    async with proxy(url, redis_url, "a") as a, proxy(url, redis_url, "b", interval=60) as b:
        await until(lambda: b.feed.in_sync)
        await a.commit([binding(), binding("sip:alice@192.0.2.2")])
        await until(lambda: len(held(b)) == 2, timeout=2)
        await a.commit([], (Removal(ALICE, "sip:alice@192.0.2.2"),))
        await until(lambda: held(b) == ["sip:alice@192.0.2.1:5060"], timeout=2)


async def test_an_older_change_never_replaces_a_newer_one(url: str, redis_url: str) -> None:
    async with proxy(url, redis_url, "a") as a, proxy(url, redis_url, "b") as b:
        await a.commit([binding(cseq=1)])
        await b.commit([binding(cseq=2, node="b")])
        await until(lambda: a.feed.last == b.feed.last == 2, timeout=2)
        old = binding(cseq=1)
        old.version = 1
        a.location.take([old])  # a late word of the first batch
        for p in (a, b):
            assert [x.cseq for x in p.location.lookup(ALICE, time.time())] == [2]


async def test_without_redis_the_poll_alone_carries_changes(url: str) -> None:
    """No publish reaches b (no Redis): its safety poll still reads the change."""
    async with proxy(url, None, "a") as a:
        db = await open_database(url)
        store, location = LocationStore(db, "b"), Location()
        feed = LocationFeed(store, location, None)
        await feed.load()
        assert feed.in_sync and held_by(location) == []
        await a.commit([binding()])
        await feed.catch_up()
        assert held_by(location) == ["sip:alice@192.0.2.1:5060"]
        await db.close()


def held_by(location: Location) -> list[str]:
    return [b.contact for b in location.lookup(ALICE, time.time())]


async def test_a_publish_that_never_came_is_read_by_the_safety_poll(
    url: str, redis_url: str
) -> None:
    """The committing proxy dies between commit and publish: the others read it anyway."""
    async with proxy(url, redis_url, "b", interval=0.2) as b:
        await until(lambda: b.feed.in_sync)
        db = await open_database(url)
        await LocationStore(db, "a").write([binding()], [])  # committed, never published
        await db.close()
        await until(lambda: held(b) == ["sip:alice@192.0.2.1:5060"], timeout=2)


async def test_a_proxy_is_syncing_until_it_has_caught_up_after_subscribing(
    url: str, redis_url: str
) -> None:
    async with proxy(url, redis_url, "a") as a:
        await a.commit([binding()])
        db = await open_database(url)
        store, location = LocationStore(db, "b"), Location()
        feed = LocationFeed(store, location, open_redis(redis_url))
        assert not feed.in_sync
        await feed.load()
        assert not feed.in_sync  # loaded, not yet subscribed
        feed.start()
        await until(lambda: feed.in_sync, timeout=2)
        assert held_by(location) == ["sip:alice@192.0.2.1:5060"]
        # Redis drops the subscription: syncing again until the catch-up after it.
        assert feed.subscriptions == 1
        client = open_redis(redis_url)
        await client.client_kill_filter(_type="pubsub")
        await until(lambda: feed.subscriptions == 2, timeout=3)
        await a.commit([binding("sip:alice@192.0.2.9")])
        await until(lambda: feed.in_sync and len(held_by(location)) == 2, timeout=3)
        assert sorted(held_by(location)) == ["sip:alice@192.0.2.1:5060", "sip:alice@192.0.2.9"]
        await client.aclose()
        await feed.close()
        await db.close()
