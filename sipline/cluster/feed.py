"""A node's side of configuration changes (sipline.cluster.changes): apply what
is pushed, report the version applied, catch up on what was missed.

Changes arrive by POST /config on the admin endpoint (without Redis) or on
the Redis channel (with it); each goes to the role's reload for its topic.
Versions are applied in order: a change that skips one (a message lost while
Redis was away) reloads every topic instead. On (re)subscribing, and every
``poll`` seconds as a safety net, the node reads ``config_version`` and
catches up if it moved. A reload that fails leaves the version where it was,
becomes the node's last error and goes to ``error_queue`` with the reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import orjson

from sipline.cluster.changes import CHANNEL, TOPICS, Change, current
from sipline.logs import event
from sipline.storage.database import Database, StorageError
from sipline.storage.error_queue import queue_error
from sipline.storage.live import redis_errors

if TYPE_CHECKING:
    from redis.asyncio import Redis

log = logging.getLogger("sipline.cluster.feed")

Reload = Callable[[tuple[str, ...]], Awaitable[None]]  # keys; () = the whole topic
ERROR_SOURCE = "config"
RETRY = 1.0  # seconds before subscribing again after Redis failed


class ConfigFeed:
    """Applies changes to one node through the role's reloads (``on(topic, reload)``)."""

    def __init__(
        self, db: Database, node: str, *, poll: float = 60.0, redis: Redis | None = None
    ) -> None:
        self.db = db
        self.node = node
        self.poll = poll
        self.redis = redis
        self.reloads: dict[str, Reload] = {}
        self.applied: int | None = None
        self.last_error = ""
        self.counts = {"applied": 0, "failed": 0}
        self.changed: Callable[[], None] = _nothing  # told after each change, applied or not
        self._lock = asyncio.Lock()
        self._tasks: list[asyncio.Task[None]] = []

    def on(self, topic: str, reload: Reload) -> None:
        assert topic in TOPICS, topic
        self.reloads[topic] = reload

    async def begin(self) -> None:
        """Read the version before the role loads what it needs: a change made
        while it loads is then caught up afterwards."""
        self.applied = await current(self.db)

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._poll())]
        if self.redis is not None:
            self._tasks.append(loop.create_task(self._listen(self.redis)))

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    # -- applying ---------------------------------------------------------------------------
    async def apply(self, change: Change) -> str:
        """Apply one change; "" when done (or already applied), else why not."""
        async with self._lock:
            if self.applied is not None and change.version <= self.applied:
                return ""
            if change.version > await current(self.db):
                # Not a version the database has: a stray or forged message must
                # not move the version past changes still to come.
                event(log, "config_version_unknown", logging.WARNING, version=change.version)
                return f"config version {change.version} is not in the database"
            gap = self.applied is None or change.version > self.applied + 1
            if gap:
                return await self._reload_all(change.version, change)
            return await self._reload(change.version, {change.topic: change.keys}, change)

    async def catch_up(self) -> str:
        """Reload everything if the stored version moved past the one applied."""
        async with self._lock:
            version = await current(self.db)
            if self.applied is not None and version <= self.applied:
                return ""
            return await self._reload_all(version, None)

    async def _reload_all(self, version: int, change: Change | None) -> str:
        return await self._reload(version, dict.fromkeys(self.reloads, ()), change)

    async def _reload(
        self, version: int, topics: dict[str, tuple[str, ...]], change: Change | None
    ) -> str:
        try:
            for topic, keys in topics.items():
                reload = self.reloads.get(topic)
                if reload is not None:
                    await reload(keys)
        except Exception as exc:
            return await self._failed(version, topics, change, exc)
        self.applied = version
        self.counts["applied"] += 1
        self.changed()
        event(log, "config_applied", version=version, topics=",".join(topics) or "-")
        return ""

    async def _failed(
        self,
        version: int,
        topics: dict[str, tuple[str, ...]],
        change: Change | None,
        exc: Exception,
    ) -> str:
        reason = f"config version {version} ({','.join(topics)}) not applied: {exc!r}"[:500]
        self.last_error = reason
        self.counts["failed"] += 1
        self.changed()
        event(log, "config_not_applied", logging.ERROR, version=version, error=repr(exc))
        payload: dict[str, Any] = {"node": self.node, "version": version, "topics": list(topics)}
        if change is not None:
            payload["keys"] = list(change.keys)
        try:
            await queue_error(self.db, ERROR_SOURCE, reason, orjson.dumps(payload).decode())
        except StorageError as error:
            event(log, "config_error_not_queued", logging.ERROR, error=error)
        return reason

    # -- hearing of changes -----------------------------------------------------------------
    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.poll)
            try:
                await self.catch_up()
            except StorageError as exc:  # the database away: the next poll tries again
                event(log, "config_poll_failed", logging.WARNING, error=exc)

    async def _listen(self, redis: Redis) -> None:
        """Subscribe to the channel and apply what comes; after a failure, subscribe
        again and catch up on what was published meanwhile."""
        failing = False
        while True:
            pubsub = redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(CHANNEL)
                if failing:
                    event(log, "config_channel_back")
                    failing = False
                await self.catch_up()
                while True:
                    message = await pubsub.get_message(timeout=1.0)
                    if message is not None:
                        await self._heard(message.get("data"))
            except (*redis_errors(), StorageError) as exc:
                if not failing:
                    event(log, "config_channel_lost", logging.WARNING, error=repr(exc))
                    failing = True
                await asyncio.sleep(RETRY)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()

    async def _heard(self, data: Any) -> None:
        try:
            change = Change.from_json(orjson.loads(data))
        except (ValueError, TypeError) as exc:
            event(log, "config_message_refused", logging.WARNING, error=exc)
            return
        await self.apply(change)


def _nothing() -> None:
    pass
