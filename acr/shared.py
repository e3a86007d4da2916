"""What the ACR's live state (stats, health, counters) shares about its Redis link.

A sync loop calls Redis about once a second; when Redis is away the call path
goes on with the local picture. ``Link`` logs the first failure and the
recovery, not every retry, and tells the call path whether to try Redis at all.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from sipline.logs import event

if TYPE_CHECKING:
    from redis.asyncio import Redis

log = logging.getLogger("sipline.acr.live")

# A Redis that does not answer within this long is treated as away (the sync is retried).
TIMEOUT = 1.0


def open_redis(url: str) -> Redis:
    from redis.asyncio import Redis
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff

    # One retry on a fresh connection: a pooled one may have died with a Redis restart.
    return Redis.from_url(
        url,
        socket_timeout=TIMEOUT,
        socket_connect_timeout=TIMEOUT,
        retry=Retry(NoBackoff(), 1),
    )


def redis_errors() -> tuple[type[BaseException], ...]:
    """What a Redis call raises when Redis is away or slow."""
    from redis.exceptions import RedisError

    return (RedisError, OSError, asyncio.TimeoutError)


class Link:
    """Whether the last Redis exchange of one part worked; logs changes only."""

    __slots__ = ("part", "ok", "failures")

    def __init__(self, part: str) -> None:
        self.part = part
        self.ok = True
        self.failures = 0

    def failed(self, exc: BaseException) -> None:
        self.failures += 1
        if self.ok:
            self.ok = False
            event(log, "redis_unavailable", logging.WARNING, part=self.part, error=repr(exc))

    def succeeded(self) -> None:
        if not self.ok:
            self.ok = True
            event(log, "redis_recovered", part=self.part, failures=self.failures)
