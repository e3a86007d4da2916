"""Redis, the live state nodes share (DESIGN.md "State"): one way to open a client
and to tell the errors that mean Redis is away or slow.

Every caller treats Redis as something that may be away: a call that fails is
retried by its own loop, and the node goes on with what it knows.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

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

