"""Concurrent calls and calls per second per carrier, counted across both ACR nodes.

Redis holds the shared truth, per carrier:

- ``sipline:acr:calls:<carrier>``, a hash with two fields per node run
  (``NODE.RANDOM``): ``NODE.RANDOM``, its calls in progress, and
  ``NODE.RANDOM:exp``, until when that count holds. A node writes only its
  own fields, and always its absolute count, never a change to it: the
  script sets it when it admits a call, and every ``sync()`` sets it again
  with a fresh expiry. So a Redis that restarted empty, or from an old
  snapshot, or missed writes while it was away, holds the right counts again
  at the nodes' next syncs (a second), and the total is a sum of the live
  counts. A node that stops syncing (dead, restarted, or cut off from Redis)
  drops out of the totals when its count expires (``TTL``); the fields of a
  run long gone are deleted by the next sync of another.
- ``sipline:acr:cps:<carrier>:<second>``, the new calls of that wall-clock
  second across both nodes (INCR; expires after a few seconds).

Two ways to admit a call:

- ``admit(carrier, now)`` (and ``await acquire(carrier, now)``, the same as a
  coroutine) is exact across the nodes: a Lua script adds up the nodes' live
  counts, checks the cps bucket and, when there is room, counts the call in
  both, atomically. ``admit`` gives the verdict at once when no round trip is
  needed (a carrier without limits, no Redis, Redis away, or the carrier full
  with this node's own calls), else a future: the admissions asked for while
  one pipeline is out go together in the next (one round trip for them all,
  each script still atomic), from one task per batch, none per call. When
  Redis is away it falls back to ``try_start`` without trying Redis per call
  until a sync gets through.
- ``try_start(carrier, now)`` never waits: it admits against this node's own
  count plus the other nodes' as of the last ``sync()`` (their calls in
  progress, and their new calls in the last full second as the estimate of
  this one). Between two syncs both nodes may admit into the same spare room,
  so the limits can be overshot by what the other node admitted in that time
  (at most about one sync interval's worth; while Redis is away, by what the
  other nodes admit during the outage).

``end(name)`` lowers this node's count at once; the other node sees the freed
room after this node's next ``sync()`` (about a second), which errs towards
refusing, never towards overshooting. Every ``now`` is wall-clock time: the
cps buckets are shared seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from acr.shared import Link, open_redis, redis_errors
from sipline.carriers.model import Carrier
from sipline.nodecounts import LIVE_TOTAL, Others, new_member, own_fields

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.commands.core import AsyncScript

__all__ = ["Counters", "open_counters"]

CALLS = "sipline:acr:calls:"
CPS = "sipline:acr:cps:"
TTL = 10  # seconds a node's count holds without a refresh
KEEP_SECONDS = 3  # recent seconds of own new calls kept locally

ADMITTED, NO_CAPACITY, NO_CPS = 0, 1, 2

# KEYS: calls hash, cps bucket. ARGV: node, capacity (-1: none), cps (-1: none), now, ttl,
# and the node's own calls with this one (it knows them better than Redis does).
ACQUIRE = (
    LIVE_TOTAL
    + """
local node, exp = ARGV[1], ARGV[1] .. ':exp'
local capacity, cps = tonumber(ARGV[2]), tonumber(ARGV[3])
local now, ttl, own = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
if capacity >= 0 and own + live_total(KEYS[1], node, now) > capacity then return 1 end
if cps >= 0 and tonumber(redis.call('GET', KEYS[2]) or '0') >= cps then return 2 end
redis.call('HSET', KEYS[1], node, own, exp, string.format('%.3f', now + ttl))
redis.call('EXPIRE', KEYS[1], 3600)
redis.call('INCR', KEYS[2])
redis.call('EXPIRE', KEYS[2], 5)
return 0
"""
)


Waiting = tuple[Carrier, float, "asyncio.Future[bool]"]  # an admission in a batch


@dataclass(slots=True)
class Count:
    """One carrier's limits and what this node knows of its use."""

    capacity: int | None = None
    cps: int | None = None
    active: int = 0  # this node's calls in progress
    reserved: int = 0  # this node's acquires under way (Redis asked, no answer yet)
    others: int = 0  # the other nodes' calls in progress, at the last sync
    seen: Others = field(default_factory=Others)  # ... node by node
    others_cps: int = 0  # the other nodes' new calls in the last full second, at the last sync
    seconds: dict[int, int] = field(default_factory=dict)  # this node's new calls per second
    unpushed: dict[int, int] = field(default_factory=dict)  # of those, not yet in the bucket
    refused: int = 0

    def new_calls(self, second: int) -> int:
        return self.seconds.get(second, 0)

    def admits(self, second: int) -> int:
        """ADMITTED, or why not, by this node's picture."""
        if self.capacity is not None and self.active + self.reserved + self.others >= self.capacity:
            return NO_CAPACITY
        if self.cps is not None and self.new_calls(second) + self.others_cps >= self.cps:
            return NO_CPS
        return ADMITTED

    def count(self, second: int, pushed: bool) -> None:
        self.active += 1
        self.seconds[second] = self.seconds.get(second, 0) + 1
        if not pushed:
            self.unpushed[second] = self.unpushed.get(second, 0) + 1
        if len(self.seconds) > KEEP_SECONDS:
            for old in [s for s in self.seconds if s <= second - KEEP_SECONDS]:
                del self.seconds[old]

    def headroom(self, second: int) -> float:
        share = 1.0
        if self.capacity is not None:
            used = self.active + self.others
            share = 1.0 - used / self.capacity if self.capacity > 0 else 0.0
        if self.cps is not None:
            rate = max(self.new_calls(second), self.new_calls(second - 1)) + self.others_cps
            share = min(share, 1.0 - rate / self.cps if self.cps > 0 else 0.0)
        return min(1.0, max(0.0, share))


class Counters:
    """Per-carrier concurrent-call and cps counters, in process or shared through Redis."""

    def __init__(
        self,
        redis: Redis | None = None,
        *,
        node: str = "local",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.redis = redis
        self.node = node
        self.clock = clock
        self.link = Link("counters")
        self.owns_redis = False
        self.counts: dict[str, Count] = {}
        self._script: AsyncScript | None = redis.register_script(ACQUIRE) if redis else None
        # This run's field names: a count a crashed run left behind just expires.
        self.member = new_member(node)
        self._stale: dict[str, list[str]] = {}  # carrier -> long-expired fields to delete
        self._waiting: list[Waiting] = []  # next batch
        self._batcher: asyncio.Task[None] | None = None  # the batch out, if any
        self.batches = 0  # pipelines of admissions sent (for tests and metrics)

    def set_carriers(self, carriers: Iterable[Carrier]) -> None:
        """Take the carriers' current limits (on start and on every reload)."""
        for carrier in carriers:
            self._count(carrier)

    def _count(self, carrier: Carrier) -> Count:
        count = self.counts.get(carrier.name)
        if count is None:
            count = self.counts[carrier.name] = Count()
        count.capacity, count.cps = carrier.capacity, carrier.cps
        return count

    # -- the call path --

    def try_start(self, carrier: Carrier, now: float) -> bool:
        """Admit a new call by the local picture (no I/O); False when a limit would be passed."""
        count = self._count(carrier)
        second = int(now)
        if count.admits(second) != ADMITTED:
            count.refused += 1
            return False
        count.count(second, pushed=False)
        return True

    def admit(self, carrier: Carrier, now: float) -> bool | asyncio.Future[bool]:
        """Admit a new call exactly across the nodes, without a task per call.

        The verdict at once when no Redis round trip is needed (no limits, no
        Redis, Redis away, full with this node's own calls), else a future of
        it, resolved when the batch it joins comes back from Redis. Must be
        called on the event loop.
        """
        count = self._count(carrier)
        if (
            self._script is None
            or not self.link.ok
            or (carrier.capacity is None and carrier.cps is None)
            or count.seen.assumed  # Redis lost some node's count: this node knows better
        ):
            return self.try_start(carrier, now)
        if carrier.capacity is not None and count.active + count.reserved >= carrier.capacity:
            count.refused += 1  # full with this node's own calls: no need to ask
            return False
        loop = asyncio.get_running_loop()
        future: asyncio.Future[bool] = loop.create_future()
        count.reserved += 1
        self._waiting.append((carrier, now, future))
        if self._batcher is None:
            self._batcher = loop.create_task(self._send_batches())
        return future

    async def acquire(self, carrier: Carrier, now: float) -> bool:
        """``admit`` as a coroutine: one Redis round trip (none without limits)."""
        verdict = self.admit(carrier, now)
        return verdict if isinstance(verdict, bool) else await verdict

    async def _send_batches(self) -> None:
        """Send the waiting admissions in one pipeline, until none wait."""
        try:
            while self._waiting:
                batch, self._waiting = self._waiting, []
                verdicts: list[int] | None = None
                try:
                    verdicts = await self._evaluate(batch)
                except redis_errors() as exc:
                    self.link.failed(exc)
                except BaseException:  # cancelled (close), or a bug: never leave a call waiting
                    self._settle(batch, None)
                    raise
                self._settle(batch, verdicts)
        finally:
            self._batcher = None
            waiting, self._waiting = self._waiting, []
            self._settle(waiting, None)

    async def _evaluate(self, batch: list[Waiting]) -> list[int]:
        from redis.exceptions import NoScriptError

        assert self.redis is not None and self._script is not None
        calls = []
        ahead: dict[str, int] = {}  # the batch's earlier admissions to each carrier
        for carrier, now, _ in batch:
            capacity = -1 if carrier.capacity is None else carrier.capacity
            cps = -1 if carrier.cps is None else carrier.cps
            keys = (CALLS + carrier.name, f"{CPS}{carrier.name}:{int(now)}")
            n = ahead[carrier.name] = ahead.get(carrier.name, 0) + 1
            own = self.counts[carrier.name].active + n
            calls.append((*keys, self.member, capacity, cps, f"{now:.3f}", TTL, own))
        self.batches += 1
        for _ in range(2):
            async with self.redis.pipeline(transaction=False) as pipe:
                for args in calls:
                    pipe.evalsha(self._script.sha, 2, *args)
                replies = await pipe.execute(raise_on_error=False)
            if not any(isinstance(r, NoScriptError) for r in replies):
                break
            # Redis restarted (or its scripts flushed): none of them ran; load and resend.
            await self.redis.script_load(ACQUIRE)
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply
        return [int(r) for r in replies]

    def _settle(
        self,
        batch: list[Waiting],
        verdicts: list[int] | None,
    ) -> None:
        """Count and answer the admissions of a batch (by the local picture when Redis failed)."""
        for i, (carrier, now, future) in enumerate(batch):
            count = self._count(carrier)
            count.reserved -= 1
            if verdicts is None:
                admitted = self.try_start(carrier, now)
            elif verdicts[i] == ADMITTED:
                count.count(int(now), pushed=True)
                admitted = True
            else:
                count.refused += 1
                admitted = False
            if future.done():  # given up on by its caller: the room goes back
                if admitted:
                    self.end(carrier.name)
            else:
                future.set_result(admitted)

    def end(self, carrier_name: str) -> None:
        """A call admitted by ``try_start`` or ``acquire`` ended."""
        count = self.counts.get(carrier_name)
        if count is not None and count.active > 0:
            count.active -= 1

    def resume(self, carrier_name: str) -> None:
        """Count a call this node had admitted before a restart (it is still up)."""
        count = self.counts.get(carrier_name)
        if count is None:
            count = self.counts[carrier_name] = Count()
        count.active += 1

    def headroom(self, carrier_name: str, now: float | None = None) -> float:
        """Spare share of the carrier's capacity and cps, 0..1 (the smaller); 1 with no limits."""
        count = self.counts.get(carrier_name)
        if count is None:
            return 1.0
        return count.headroom(int(self.clock() if now is None else now))

    def active(self, carrier_name: str) -> int:
        """Calls in progress through the carrier across the nodes, as this node knows it."""
        count = self.counts.get(carrier_name)
        return 0 if count is None else count.active + count.others

    # -- sharing --

    async def sync(self) -> None:
        """Write this node's counts, read the others'; never raises (Redis away: retried)."""
        if self.redis is None:
            return
        now = self.clock()
        last = int(now) - 1
        names = [n for n, c in self.counts.items() if c.capacity is not None or c.cps is not None]
        sent: dict[str, dict[int, int]] = {}
        try:
            async with self.redis.pipeline(transaction=True) as pipe:
                for name in names:
                    count = self.counts[name]
                    key = CALLS + name
                    sent[name] = dict(count.unpushed)
                    # Admissions still out count too: never less than the truth.
                    own = count.active + count.reserved
                    pipe.hset(key, mapping=own_fields(self.member, own, now + TTL))
                    if stale := self._stale.pop(name, None):
                        pipe.hdel(key, *stale)
                    pipe.expire(key, 3600)
                    for second, n in count.unpushed.items():
                        pipe.incrby(f"{CPS}{name}:{second}", n)
                        pipe.expire(f"{CPS}{name}:{second}", 5)
                for name in names:
                    pipe.hgetall(CALLS + name)
                    pipe.get(f"{CPS}{name}:{last}")
                replies = await pipe.execute()
        except redis_errors() as exc:
            self.link.failed(exc)
            return
        self.link.succeeded()
        reads = replies[len(replies) - 2 * len(names) :]
        for i, name in enumerate(names):
            count = self.counts[name]
            for second, n in sent[name].items():
                left = count.unpushed.get(second, 0) - n
                if left > 0:
                    count.unpushed[second] = left
                else:
                    count.unpushed.pop(second, None)
            stale = count.seen.read(reads[2 * i], now, self.member)
            count.others = count.seen.total
            if stale:
                self._stale[name] = stale
            count.others_cps = max(0, int(reads[2 * i + 1] or 0) - count.new_calls(last))

    async def close(self) -> None:
        """Drop this node's counts from the shared picture (its calls are gone with it)."""
        if self._batcher is not None:
            self._batcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._batcher
        if self.redis is not None:
            try:
                async with self.redis.pipeline(transaction=False) as pipe:
                    for name in self.counts:
                        pipe.hdel(CALLS + name, self.member, f"{self.member}:exp")
                    await pipe.execute()
            except redis_errors() as exc:
                self.link.failed(exc)
            if self.owns_redis:
                await self.redis.aclose()


def open_counters(
    redis_url: str | None, *, node: str = "local", clock: Callable[[], float] = time.time
) -> Counters:
    """Counters shared through Redis at ``redis_url``, or in process when it is None."""
    counters = Counters(open_redis(redis_url) if redis_url else None, node=node, clock=clock)
    counters.owns_redis = redis_url is not None
    return counters
