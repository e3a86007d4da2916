"""The ACR node's live state: carrier statistics, gateway health and counters, in one place.

``await open_live_state(settings, node)`` opens one Redis client for the three
(``[redis] url``; none: everything in process) and pulls the shared picture
once. The call path then only touches local objects; ``sync()`` — run by
``start()`` every ``interval`` seconds, or by the caller — pushes this node's
changes and pulls the other node's, in one pipeline per part, concurrently.
``view`` is what ``acr.ranking.RouteTable.refresh`` reads as a HealthView.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from acr.counters import Counters
from acr.health import Health
from acr.shared import open_redis
from acr.stats import CarrierStats
from sipline.logs import event

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from sipline.config import Settings

__all__ = ["LiveState", "LiveView", "open_live_state"]

log = logging.getLogger("sipline.acr.live")


class LiveView:
    """Gateway health and carrier headroom, as ranking asks for them (a HealthView)."""

    __slots__ = ("health", "counters")

    def __init__(self, health: Health, counters: Counters) -> None:
        self.health = health
        self.counters = counters

    def gateway_up(self, address: str, now: float) -> bool:
        return self.health.gateway_up(address, now)

    def headroom(self, carrier: str) -> float:
        return self.counters.headroom(carrier)


class LiveState:
    def __init__(
        self,
        stats: CarrierStats,
        health: Health,
        counters: Counters,
        redis: Redis | None = None,
    ) -> None:
        self.stats = stats
        self.health = health
        self.counters = counters
        self.view = LiveView(health, counters)
        self.redis = redis
        self._task: asyncio.Task[None] | None = None

    @property
    def shared(self) -> bool:
        return self.redis is not None

    async def sync(self) -> None:
        """Push this node's changes, pull the others'; never raises."""
        await asyncio.gather(self.stats.sync(), self.health.sync(), self.counters.sync())

    def start(self, interval: float = 1.0) -> None:
        """Sync every ``interval`` seconds in a task of its own until ``close()``."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(interval))

    async def _run(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await self.sync()
            except Exception as exc:  # a bug here must not stop the syncing for good
                event(log, "sync_failed", logging.ERROR, error=repr(exc))

    async def close(self) -> None:
        """Stop syncing, push what is left, drop this node's counts, let go of Redis."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.stats.close()
        await self.health.close()
        await self.counters.close()
        if self.redis is not None:
            await self.redis.aclose()


async def open_live_state(
    settings: Settings, node: str | None = None, *, clock: Callable[[], float] = time.time
) -> LiveState:
    """Live state for ACR node ``node`` (default ``[node] name``), shared when Redis is configured.

    A Redis that cannot be reached at start is logged and retried by every sync:
    the node routes on its own picture meanwhile.
    """
    acr = settings.acr
    name = node or settings.node.name
    redis = open_redis(settings.redis.url) if settings.redis.url else None
    state = LiveState(
        CarrierStats(acr.stats_half_life, redis, node=name, clock=clock),
        Health(
            failures=acr.probe_failures,
            successes=acr.probe_successes,
            backoff=acr.backoff,
            max_backoff=acr.max_backoff,
            redis=redis,
            node=name,
            clock=clock,
        ),
        Counters(redis, node=name, clock=clock),
        redis,
    )
    await state.sync()  # the shared picture before the first call; Redis away: logged
    return state
