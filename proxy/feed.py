"""The location feed: what any proxy commits, every proxy holds within milliseconds.

The database is the truth and the feed only says when to look: each batch of
binding changes has a version (proxy/location_store.py), the proxy that
committed it publishes the version on Redis (``sipline:location``), and each
proxy that hears of a version above the last it applied reads the rows
written since (``LocationStore.changes``), tombstones of removals included,
into its ``Location``. One read at a time per proxy: the versions heard
meanwhile are read together by the next one.

Nothing is missed: a version heard out of order, a publish lost with its
publisher, a Redis restart or failover all end in the same read of
everything after the last version applied. The read also runs every
``catch_up_interval`` seconds as a safety net, and every
``catch_up_interval_unsubscribed`` seconds while the subscription is down (so
propagation stays bounded without Redis). A proxy whose last successful read
is older than ``RELOAD_AFTER`` (tombstones may be gone) reloads everything.

A proxy is ``syncing`` from its start, and again from each (re)subscription,
until a read that began after the subscription has succeeded: the proxy then
answers new work 503 (ProxyHandler). Without Redis (one proxy alone) there is
no feed and the proxy is in sync once its bindings are loaded, as before.
Nothing here knows about processes: workers of one proxy each run a feed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from sipline.logs import event
from sipline.storage import StorageError
from sipline.storage.live import Link, redis_errors

from .location import Location
from .location_store import CHANGES_PAGE, TOMBSTONE_KEEP, LocationStore

if TYPE_CHECKING:
    from redis.asyncio import Redis

log = logging.getLogger("sipline.proxy.feed")

CHANNEL = "sipline:location"
RELOAD_AFTER = TOMBSTONE_KEEP / 2  # seconds without a catch-up: reload everything
RESUBSCRIBE = 0.5  # seconds between attempts to subscribe again


class LocationFeed:
    """Keeps ``location`` level with the database; ``redis`` None: no feed.

    Counters: ``published`` versions, ``catch_ups`` reads, ``rows`` read,
    ``reloads`` (full), ``failures`` (reads that failed), ``subscriptions``."""

    def __init__(
        self,
        store: LocationStore,
        location: Location,
        redis: Redis | None,
        *,
        interval: float = 1.0,
        unsubscribed_interval: float = 0.1,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.location = location
        self.redis = redis
        self.interval = interval
        self.unsubscribed_interval = unsubscribed_interval
        self.clock = clock
        self.last = 0  # every batch up to this version is in ``location``
        self.syncing = True
        self.subscribed = False
        self.published = self.catch_ups = self.rows = self.reloads = self.failures = 0
        self.subscriptions = 0
        self.link = Link("location feed", log)
        self._caught_up_at = 0.0
        self._resync = False  # a (re)subscription waits for its first catch-up
        self._wanted = asyncio.Event()
        self._to_publish = 0
        self._publish = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._db_ok = True

    @property
    def in_sync(self) -> bool:
        """Caught up since the last (re)subscription: ready for new work."""
        return not self.syncing

    # -- life ---------------------------------------------------------------------------
    async def load(self) -> None:
        """Read every live binding (at start, before listening)."""
        await self._reload()
        if self.redis is None:
            self.syncing = False

    def start(self) -> None:
        if self.redis is None:
            return
        loop = asyncio.get_running_loop()
        for run, name in ((self._listen, "listen"), (self._catch_up_loop, "catch-up"),
                          (self._poll, "poll"), (self._publish_loop, "publish")):  # fmt: skip
            self._tasks.append(loop.create_task(run(), name=f"location-feed-{name}"))

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        if self.redis is not None:
            with contextlib.suppress(*redis_errors()):
                await self.redis.aclose()

    # -- our own commits (the writer's ``committed``) -------------------------------------
    def committed(self, version: int) -> None:
        """A batch of ours is committed (and in ``location``): tell the others."""
        if version == self.last + 1:
            self.last = version
        elif version > self.last:
            self._wanted.set()  # others' batches came between: read them
        if self.redis is not None:
            self._to_publish = max(self._to_publish, version)
            self._publish.set()

    async def _publish_loop(self) -> None:
        assert self.redis is not None
        while True:
            await self._publish.wait()
            self._publish.clear()
            try:
                await self.redis.publish(CHANNEL, self._to_publish)
                self.published += 1
            except redis_errors() as exc:  # the others' polls read it anyway
                self.link.failed(exc)

    # -- hearing of others' commits --------------------------------------------------------
    async def _listen(self) -> None:
        assert self.redis is not None
        while True:
            pubsub = self.redis.pubsub()
            try:
                await pubsub.subscribe(CHANNEL)
                self._subscribed()
                # redis-py subscribes again by itself after a reconnection (messages
                # meanwhile are lost): we hear of it here, and catch up.
                assert pubsub.connection is not None
                pubsub.connection.register_connect_callback(self._reconnected)
                while True:
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                    if message is not None and _version(message) > self.last:
                        self._wanted.set()
            except redis_errors() as exc:
                self.link.failed(exc)
            finally:
                self.subscribed = False
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
            await asyncio.sleep(RESUBSCRIBE)

    def _reconnected(self, connection: object) -> None:
        self._subscribed()

    def _subscribed(self) -> None:
        self.link.succeeded()
        self.subscribed = True
        self.subscriptions += 1
        if not self.syncing:
            self.syncing = True
            event(log, "location_syncing", logging.WARNING, last=self.last)
        self._resync = True
        self._wanted.set()

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.interval if self.subscribed else self.unsubscribed_interval)
            self._wanted.set()

    # -- reading the database ----------------------------------------------------------------
    async def _catch_up_loop(self) -> None:
        while True:
            await self._wanted.wait()
            self._wanted.clear()
            resync, self._resync = self._resync, False
            try:
                await self.catch_up()
            except StorageError as exc:
                self._resync = self._resync or resync
                self._failed(exc)
                await asyncio.sleep(self.unsubscribed_interval)
                self._wanted.set()
                continue
            if resync and not self._resync and self.syncing:
                self.syncing = False
                event(log, "location_synced", last=self.last, bindings=len(self.location))

    async def catch_up(self) -> None:
        """Take every batch committed after ``last`` (StorageError: try again later)."""
        if self.clock() - self._caught_up_at > RELOAD_AFTER:
            await self._reload()
            return
        self.catch_ups += 1
        while True:
            rows = await self.store.changes(self.last)
            if rows:
                self.location.take(rows)
                self.rows += len(rows)
            self._healthy()
            if len(rows) < CHANGES_PAGE:
                if rows:
                    self.last = max(self.last, rows[-1].version)
                break
            # A full page: its last version may go on in the next one.
            self.last = max(self.last, rows[-1].version - 1)
        self._caught_up_at = self.clock()

    async def _reload(self) -> None:
        version = await self.store.version()  # first: the load holds every batch up to it
        now = self.clock()
        self.location.replace(await self.store.load(now))
        self.last = version
        self.reloads += 1
        self._caught_up_at = now
        self._healthy()

    def _failed(self, exc: StorageError) -> None:
        self.failures += 1
        if self._db_ok:
            self._db_ok = False
            event(log, "location_catch_up_failed", logging.WARNING, last=self.last, error=exc)

    def _healthy(self) -> None:
        if not self._db_ok:
            self._db_ok = True
            event(log, "location_catch_up_back", last=self.last)


def _version(message: dict[str, object]) -> int:
    data = message.get("data")
    try:
        return int(data)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return 0  # not ours: ignored
