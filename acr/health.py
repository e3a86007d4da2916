"""Gateway health: OPTIONS probes with hysteresis, passive back-off, shared through Redis.

Two things decide whether a gateway (or a DID's proxy) gets calls:

- the probe verdict, with hysteresis: ``failures`` consecutive failed probes
  mark it down, ``successes`` consecutive good ones mark it up again (a
  gateway never probed is "unknown" and gets calls);
- passive back-off: a call answered 408 or 503 (or timing out, which the
  router records as 408) passes the gateway over for ``backoff`` seconds; a
  failure after a back-off ran out doubles the next one, up to
  ``max_backoff``; failures while it is passed over (calls already under way)
  change nothing, and an answered call ends the doubling.

Every ``now`` is wall-clock time (``time.time()``): both ACR nodes compare
each other's times.

Sharing: each node writes its own view of each gateway it changed to one
Redis hash, ``sipline:acr:health``, field ``ADDRESS|NODE`` =
``state|changed|until|backoff``; nobody writes another node's field, so
writes never race. On ``sync()`` a node reads every field and takes, per
gateway, the newest probe verdict (by ``changed``) and the latest back-off end
(``until``). So a gateway marked down by one node is down for the other after
their syncs, and ``sipline carrier list`` reads the same hash. A node writes
again every gateway it knows whose field of its own it does not find at a
sync: a Redis that restarted empty holds every node's picture again at their
next syncs.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from acr.shared import Link, open_redis, redis_errors

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = [
    "GatewayHealth",
    "Health",
    "PASSIVE_CODES",
    "gateway_statuses",
    "open_health",
]

KEY = "sipline:acr:health"
TTL = 7 * 86400  # a week without any node writing: forget it all
PASSIVE_CODES = frozenset((408, 503))

UP, DOWN, BACKOFF, UNKNOWN = "up", "down", "backoff", "unknown"


@dataclass(slots=True)
class GatewayHealth:
    state: str = UNKNOWN  # the probe verdict: unknown, up, down
    changed: float = 0.0  # when the verdict last changed; the newest wins across nodes
    failures: int = 0  # consecutive failed probes
    successes: int = 0  # consecutive good probes
    until: float = 0.0  # passed over until this time (passive back-off)
    backoff: float = 0.0  # length of the last back-off; 0: none to double

    def encode(self) -> str:
        return f"{self.state}|{self.changed:.3f}|{self.until:.3f}|{self.backoff:.3f}"


class Health:
    """Gateway health by address (HOST:PORT), in process or shared through Redis."""

    def __init__(
        self,
        *,
        failures: int = 3,
        successes: int = 2,
        backoff: float = 30.0,
        max_backoff: float = 600.0,
        redis: Redis | None = None,
        node: str = "local",
        clock: Callable[[], float] = time.time,
    ) -> None:
        if failures < 1 or successes < 1 or backoff <= 0 or max_backoff < backoff:
            raise ValueError("need failures >= 1, successes >= 1, 0 < backoff <= max_backoff")
        self.failures = failures
        self.successes = successes
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.redis = redis
        self.node = node
        self.clock = clock
        self.link = Link("health")
        self.owns_redis = False
        self.gateways: dict[str, GatewayHealth] = {}
        self.dirty: set[str] = set()  # addresses whose state this node changed since the last push

    def _get(self, address: str) -> GatewayHealth:
        health = self.gateways.get(address)
        if health is None:
            health = self.gateways[address] = GatewayHealth()
        return health

    # -- what the prober and the router report (no I/O) --

    def probe_result(self, address: str, ok: bool, now: float) -> bool:
        """One probe's outcome; True when it changed the verdict."""
        h = self._get(address)
        if ok:
            h.successes += 1
            h.failures = 0
            if h.state != UP and h.successes >= self.successes:
                return self._verdict(address, h, UP, now)
        else:
            h.failures += 1
            h.successes = 0
            if h.state != DOWN and h.failures >= self.failures:
                return self._verdict(address, h, DOWN, now)
        return False

    def _verdict(self, address: str, h: GatewayHealth, state: str, now: float) -> bool:
        h.state = state
        h.changed = now
        self.dirty.add(address)
        return True

    def passive_failure(self, address: str, code: int, now: float) -> bool:
        """A call through ``address`` ended with ``code``; True when that started a back-off."""
        if code not in PASSIVE_CODES:
            return False
        h = self._get(address)
        if now < h.until:
            return False  # already passed over: calls sent before it was are failing too
        if h.backoff and now - h.until <= self.max_backoff:
            h.backoff = min(h.backoff * 2, self.max_backoff)
        else:  # first failure, or the last back-off is long forgotten
            h.backoff = self.backoff
        h.until = now + h.backoff
        self.dirty.add(address)
        return True

    def passive_success(self, address: str, now: float) -> None:
        """A call through ``address`` was answered: it works, end any back-off and its doubling."""
        h = self.gateways.get(address)
        if h is not None and (h.backoff or h.until > now):
            h.backoff = 0.0
            h.until = min(h.until, now)
            self.dirty.add(address)

    # -- what routing asks (no I/O) --

    def gateway_up(self, address: str, now: float) -> bool:
        h = self.gateways.get(address)
        return h is None or (h.state != DOWN and now >= h.until)

    def status(self, address: str, now: float | None = None) -> str:
        """One of up, down, backoff (passed over after 408/503), unknown (never probed)."""
        h = self.gateways.get(address)
        if h is None:
            return UNKNOWN
        if h.state == DOWN:
            return DOWN
        if (self.clock() if now is None else now) < h.until:
            return BACKOFF
        return h.state

    # -- sharing --

    async def sync(self) -> None:
        """Push this node's changes, take the other nodes'; never raises (Redis away: retried)."""
        if self.redis is None:
            return
        dirty, self.dirty = self.dirty, set()
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                self._write(pipe, dirty)
                pipe.hgetall(KEY)
                replies = await pipe.execute()
            self.link.succeeded()
            raw = replies[-1]
            self._merge(raw)
            dirty = {a for a, h in self.gateways.items() if _known(h) and self._field(a) not in raw}
            if dirty:  # Redis lost them (a restart): this node's picture goes back whole
                async with self.redis.pipeline(transaction=False) as pipe:
                    self._write(pipe, dirty)
                    await pipe.execute()
        except redis_errors() as exc:
            self.link.failed(exc)
            self.dirty |= dirty
            return

    def _field(self, address: str) -> bytes:
        return f"{address}|{self.node}".encode()

    def _write(self, pipe: Any, addresses: set[str]) -> None:
        if addresses:
            mapping = {f"{a}|{self.node}": self.gateways[a].encode() for a in addresses}
            pipe.hset(KEY, mapping=mapping)
            pipe.expire(KEY, TTL)

    def _merge(self, raw: dict[bytes, bytes]) -> None:
        for field, value in raw.items():
            try:
                address = field.decode().rsplit("|", 1)[0]
                state, changed, until, backoff = value.decode().split("|")
                theirs = GatewayHealth(state, float(changed), 0, 0, float(until), float(backoff))
            except ValueError:  # not ours: skip, never fail the sync
                continue
            if theirs.state not in (UP, DOWN, UNKNOWN):
                continue
            h = self._get(address)
            if theirs.changed > h.changed and theirs.state != h.state:
                h.state = theirs.state
                h.changed = theirs.changed
                h.failures = h.successes = 0  # count afresh from the shared verdict
            if theirs.until > h.until:
                h.until = theirs.until
                h.backoff = max(h.backoff, theirs.backoff)

    async def close(self) -> None:
        await self.sync()
        if self.redis is not None and self.owns_redis:
            await self.redis.aclose()


def _known(h: GatewayHealth) -> bool:
    """Whether a gateway's health says anything (a probe verdict, or a back-off)."""
    return h.state != UNKNOWN or h.until > 0


def open_health(redis_url: str | None, **kwargs: object) -> Health:
    """Health shared through Redis at ``redis_url``, or in process when it is None."""
    health = Health(redis=open_redis(redis_url) if redis_url else None, **kwargs)  # type: ignore[arg-type]
    health.owns_redis = redis_url is not None
    return health


async def gateway_statuses(
    redis_url: str | None,
    addresses: Iterable[str],
    now: float | None = None,
    *,
    strict: bool = False,
) -> dict[str, str]:
    """The shared status of each address (for ``sipline carrier list``); "unknown" without
    Redis, or when it cannot be read (``strict``: the Redis error is raised instead)."""
    health = open_health(redis_url)
    try:
        await health.sync()
        if not health.link.ok:
            if strict:
                raise ConnectionError(f"Redis at {redis_url} did not answer")
            return dict.fromkeys(addresses, UNKNOWN)
        return {a: health.status(a, now) for a in addresses}
    finally:
        if health.redis is not None:
            await health.redis.aclose()
