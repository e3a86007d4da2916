"""Beside a node: the guard's upkeep, and its bans shared with every other node.

Once a second the guard's tables are pruned (every ``flood_window``) and the
bans it made go to the ban store in one batch (sipline.storage.bans); the
bans others made, and operators' (``sipline ban``), come back: through Redis
pub/sub at once (after reading every ban in force at start and after each
reconnection), or from the database when its version moved, looked at every
``[limits] ban_poll`` seconds. With neither, bans stay in this process. The
store being away costs nothing on the message path: the node goes on with
the bans it has, logs the outage once, and retries.

Bans in the store carry wall-clock ends; the guard's clock is monotonic, and
``_until`` converts. The banned sources the guard has seen sending go to
``drop`` (the UDP endpoint's kernel filter, sipline.net.socket_filter)
within ``KERNEL_DELAY`` of the first one seen, so a flood stops costing the
node anything within milliseconds of its ban.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Collection
from typing import Any

from sipline.logs import event
from sipline.net.guard import FOREVER, Guard
from sipline.storage.bans import Ban, BanStore, DatabaseBans, RedisBans, ban_store
from sipline.storage.database import Database, StorageError
from sipline.storage.live import redis_errors

log = logging.getLogger("sipline.guard")

UPKEEP = 1.0  # seconds between prunes and batches of bans written
KERNEL_DELAY = 0.01  # seconds from a banned source seen sending to the kernel's filter
RETRY = 1.0  # seconds before listening to Redis again after it failed
STOP_TIMEOUT = 2.0  # seconds the last batch may take at stop
START_TIMEOUT = 2.0  # seconds a starting node waits for Redis's bans before it goes on


class BanSync:
    """Prunes ``guard`` and shares its bans through ``store`` (None: in process only)."""

    def __init__(
        self,
        guard: Guard,
        store: BanStore | None,
        node: str,
        *,
        poll: float = 5.0,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.guard = guard
        self.store = store
        self.node = node
        self.poll = poll
        self.wall = wall
        self.version: int | None = None
        self.shared: set[str] = set()  # addresses as the store last had them
        self.healthy = True
        self.synced = asyncio.Event()  # the bans in force were read (once at least)
        self._tasks: list[asyncio.Task[None]] = []
        # Where the sources to drop in the kernel go (IPv4 address, UDP port).
        self.drop: Callable[[Collection[tuple[str, int]]], int] | None = None
        self._dropping: frozenset[tuple[str, int]] = frozenset()
        self._kernel_due: asyncio.TimerHandle | None = None
        self._next_poll = 0.0
        self._next_prune = 0.0

    @classmethod
    def for_node(cls, settings: Any, guard: Guard, db: Database | None) -> BanSync:
        redis = getattr(settings, "redis", None)
        store = ban_store(redis.url if redis is not None else None, db)
        return cls(guard, store, settings.node.name, poll=guard.limits.ban_poll)

    async def start(self) -> None:
        """Apply the bans in force (if the store answers), then run beside the node."""
        loop = asyncio.get_running_loop()
        self.guard.on_dropping = self._drop_soon
        if isinstance(self.store, RedisBans):
            self._tasks.append(loop.create_task(self._listen(self.store)))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.synced.wait(), START_TIMEOUT)
        elif isinstance(self.store, DatabaseBans):
            await self._guarded(self._reload_if_moved(self.store))
        self._tasks.append(loop.create_task(self._upkeep()))

    async def stop(self) -> None:
        """Stop, after writing the bans not yet shared (bounded), and release the store."""
        self.guard.on_dropping = None
        if self._kernel_due is not None:
            self._kernel_due.cancel()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        if self.store is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._guarded(self._share()), STOP_TIMEOUT)
            await self.store.close()

    # -- the periodic part ----------------------------------------------------------
    async def _upkeep(self) -> None:
        while True:
            await asyncio.sleep(UPKEEP)
            try:
                await self.tick()
            except Exception:  # a bug here must not end the pruning
                log.exception("event=guard_upkeep_failed")

    async def tick(self) -> None:
        """Prune when due, write the bans made since, re-read the database when due."""
        guard = self.guard
        now = guard.clock()
        if now >= self._next_prune:
            guard.prune(now)
            self._next_prune = now + guard.limits.flood_window
        self._drop_in_kernel()
        if self.store is None:
            guard.made.clear()
            return
        await self._guarded(self._share())
        if isinstance(self.store, DatabaseBans) and now >= self._next_poll:
            self._next_poll = now + self.poll
            await self._guarded(self._reload_if_moved(self.store))

    def _drop_soon(self) -> None:
        """A banned source was seen sending: filter it (and what more comes by then)."""
        if self._kernel_due is None and self.drop is not None:
            loop = asyncio.get_running_loop()
            self._kernel_due = loop.call_later(KERNEL_DELAY, self._drop_in_kernel)

    def _drop_in_kernel(self) -> None:
        self._kernel_due = None
        if self.drop is None:
            return
        dropping = frozenset(
            (s.host, s.port) for s in self.guard.dropping if s.transport == "UDP" and ":" not in s.host
        )
        if dropping != self._dropping:
            self._dropping = dropping
            try:
                dropped = self.drop(dropping)
            except OSError as exc:  # a kernel without socket filters: the guard still drops
                self.drop = None
                event(log, "kernel_drop_unavailable", logging.WARNING, error=repr(exc))
                return
            event(log, "kernel_drops", logging.DEBUG, sources=dropped, seen=len(dropping))

    async def _share(self) -> None:
        made = self.guard.take_made()
        if not made or self.store is None:
            return
        wall = self.wall()
        bans = [Ban(b.key, wall + b.seconds, b.reason, self.node, wall) for b in made]
        try:
            await self.store.add(bans)
        except BaseException:
            room = self.guard.limits.max_bans - len(self.guard.made)
            self.guard.made[:0] = made[:room]  # kept for the next try
            raise
        self.shared.update(ban.address for ban in bans)

    async def _reload_if_moved(self, store: DatabaseBans) -> None:
        version = await store.version()
        if version != self.version:
            self.version = version
            await self._reload()
            await store.purge(self.wall())

    async def _reload(self) -> None:
        """Apply every ban in force; lift those the store no longer has."""
        assert self.store is not None
        bans = await self.store.active(self.wall())
        current = {ban.address for ban in bans}
        pending = {made.key for made in self.guard.made}  # made here since, not shared yet
        for address in self.shared - current - pending:
            self.guard.lift(address)
        for ban in bans:
            self.guard.apply(ban.address, self._until(ban))
        self.shared = current
        self.synced.set()

    # -- Redis pub/sub ----------------------------------------------------------------
    async def _listen(self, store: RedisBans) -> None:
        while True:
            try:
                changes = await store.subscribe()
            except redis_errors() as exc:
                self._failed(exc)
                await asyncio.sleep(RETRY)
                continue
            try:
                await self._reload()  # subscribed first: no change falls between
                self._succeeded()
                while True:
                    self._apply(await changes.next())
            except redis_errors() as exc:
                self._failed(exc)
                await asyncio.sleep(RETRY)
            finally:
                with contextlib.suppress(*redis_errors()):
                    await changes.close()

    def _apply(self, change: Ban | str) -> None:
        if isinstance(change, str):
            self.shared.discard(change)
            self.guard.lift(change)
            event(log, "ban_lifted", ip=change)
        else:
            self.shared.add(change.address)
            self.guard.apply(change.address, self._until(change))

    def _until(self, ban: Ban) -> float:
        if ban.ends_at is None:
            return FOREVER
        return self.guard.clock() + (ban.ends_at - self.wall())

    # -- the store being away ---------------------------------------------------------
    async def _guarded(self, work: Any) -> None:
        away: tuple[type[BaseException], ...] = (StorageError, *redis_errors())
        try:
            await work
        except away as exc:
            self._failed(exc)
        else:
            self._succeeded()

    def _failed(self, exc: BaseException) -> None:
        if self.healthy:
            self.healthy = False
            event(log, "ban_store_unavailable", logging.WARNING, error=repr(exc))

    def _succeeded(self) -> None:
        if not self.healthy:
            self.healthy = True
            event(log, "ban_store_recovered")
