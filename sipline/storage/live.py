"""Redis, the live state nodes share (docs/design.md "State"): one way to open a client
to tell the errors that mean Redis is away or slow, and a ``Link`` that logs the
first failure and the recovery of a part's exchanges, not every retry.

Every caller treats Redis as something that may be away: a call that fails is
retried by its own loop, and the node goes on with what it knows.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from sipline.logs import event

if TYPE_CHECKING:
    from redis.asyncio import Redis

# A Redis that does not answer within this long is treated as away (the caller retries).
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
    """Whether the last Redis exchange of one part worked; logs changes only, to ``log``."""

    __slots__ = ("part", "log", "ok", "failures")

    def __init__(self, part: str, log: logging.Logger) -> None:
        self.part = part
        self.log = log
        self.ok = True
        self.failures = 0

    def failed(self, exc: BaseException) -> None:
        self.failures += 1
        if self.ok:
            self.ok = False
            event(self.log, "redis_unavailable", logging.WARNING, part=self.part, error=repr(exc))

    def succeeded(self) -> None:
        if not self.ok:
            self.ok = True
            event(self.log, "redis_recovered", part=self.part, failures=self.failures)
