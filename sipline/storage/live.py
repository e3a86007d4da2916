"""Redis, the live state nodes share (docs/design.md "State"): one way to open a client
to tell the errors that mean Redis is away or slow, and a ``Link`` that logs the
first failure and the recovery of a part's exchanges, not every retry.

Every caller treats Redis as something that may be away: a call that fails is
retried by its own loop, and the node goes on with what it knows.

``[redis] url`` is a plain ``redis://`` URL, or names a master through Redis
Sentinel: ``redis+sentinel://[:password@]host:port,host:port/mastername[/db]``
(the sentinels, the master's name, its database). Then the client asks the
sentinels where the master is on every new connection, so after a failover
(Sentinel promoting a replica) the retry on a fresh connection reaches the
new master: every role follows it (redis-py's ``redis.asyncio.sentinel``).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from sipline.logs import event

if TYPE_CHECKING:
    from redis.asyncio import Redis

# A Redis that does not answer within this long is treated as away (the caller retries).
TIMEOUT = 1.0


SENTINEL_SCHEME = "redis+sentinel"
SENTINEL_FORM = "redis+sentinel://[:password@]host:port[,host:port...]/mastername[/db]"


@dataclass(frozen=True, slots=True)
class SentinelUrl:
    sentinels: tuple[tuple[str, int], ...]
    master: str
    db: int = 0
    password: str | None = field(default=None, repr=False)


def parse_sentinel_url(url: str) -> SentinelUrl:
    """The parts of a ``redis+sentinel://`` URL; ValueError saying the form expected."""
    scheme, sep, rest = url.partition("://")
    if scheme.lower() != SENTINEL_SCHEME or not sep:
        raise ValueError(f"expected {SENTINEL_FORM}")
    hosts, _, path = rest.partition("/")
    credentials, at, hosts = hosts.rpartition("@")
    password = unquote(credentials.partition(":")[2]) or None if at else None
    sentinels = []
    for entry in hosts.split(","):
        host, _, port = entry.strip().rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"sentinel {entry!r}: expected host:port in {SENTINEL_FORM}")
        sentinels.append((host.strip("[]"), int(port)))
    master, _, db = path.strip("/").partition("/")
    if not master or (db and not db.isdigit()):
        raise ValueError(f"expected the master's name (and a database number) in {SENTINEL_FORM}")
    return SentinelUrl(tuple(sentinels), master, int(db or 0), password)


def check_redis_url(url: str) -> str:
    """``url`` if Redis can be opened with it (the config's check); ValueError otherwise."""
    scheme = url.partition("://")[0].lower()
    if scheme == SENTINEL_SCHEME:
        parse_sentinel_url(url)
    elif scheme not in ("redis", "rediss", "unix"):
        raise ValueError(f"expected redis://host:port/db, rediss://..., unix://... or {SENTINEL_FORM}")
    return url


def open_redis(url: str) -> Redis:
    from redis.asyncio import Redis
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff

    # One retry on a fresh connection: a pooled one may have died with a Redis
    # restart, or its master been replaced by Sentinel.
    options: dict[str, Any] = {
        "socket_timeout": TIMEOUT,
        "socket_connect_timeout": TIMEOUT,
        "retry": Retry(NoBackoff(), 1),
    }
    if url.partition("://")[0].lower() != SENTINEL_SCHEME:
        return Redis.from_url(url, **options)
    from redis.asyncio.sentinel import Sentinel

    parts = parse_sentinel_url(url)
    sentinel = Sentinel(
        parts.sentinels,
        sentinel_kwargs={"socket_timeout": TIMEOUT, "socket_connect_timeout": TIMEOUT},
    )
    return sentinel.master_for(parts.master, db=parts.db, password=parts.password, **options)


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
