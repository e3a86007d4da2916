"""Carrier statistics per carrier and destination prefix, time-decayed, shared through Redis.

What is counted, per (carrier, prefix): attempts, answered calls, connected
calls (answered, or ended by the callee or the number: busy, no answer,
declined, not found — the network did its job; ITU-T E.425's NER), post-dial
delay (seconds to the first provisional), durations of answered calls, and the
relay's media figures (MOS, jitter, loss) when it published them.

Time decay. Every event weighs 1 when it happens and half as much every
``half_life`` seconds after. Rather than decaying stored values (which makes
merging two nodes' values a rescale of each), an event at time ``t`` is stored
already scaled to a reference epoch ``t0``: as ``2 ** ((t - t0) / half_life)``.
Its weight at any later time ``now`` is then ``stored * 2 ** (-(now - t0) /
half_life)``, one factor common to every stored value, so adding events and
merging nodes is plain addition, and ratios (ASR, mean PDD) need no factor at all.
In Redis each node keeps its own sums of each (carrier, prefix), one hash field
``CARRIER|PREFIX|NODE`` holding them packed as little-endian doubles, and a
reader adds up the nodes' fields. A node writes only its own fields, and
always their absolute values, never a change to them: a Redis that restarted
empty (or from an old snapshot, or missed writes while away) is written whole
again as soon as a node sees its own fields missing, at its next sync; and a
node that restarts takes its fields back from Redis before it writes any.

The scaled values grow by 2 each half-life, so the epoch moves on: time is
cut into generations of ``GENERATION`` half-lives, generation ``g`` has epoch
``g * GENERATION * half_life`` and its own Redis hash, and an event goes to
the generation current when it is recorded (its scaled value stays below
``2 ** GENERATION``, far from float limits). A reader sums the current
generation and the one before, each with its own factor; anything older is at
least ``GENERATION`` half-lives old and weighs under ``2 ** -GENERATION``, so
it is left to expire.

The call path never waits on Redis: ``record_attempt`` and ``record_call_end``
add to the local picture and to this node's sums; ``sync()`` (about once a
second) writes the sums that changed and pulls the shared picture in one
pipeline (a write repeated is harmless: it sets a value).
"""

from __future__ import annotations

import logging
import math
import struct
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from acr.shared import Link, open_redis, redis_errors
from sipline.carriers.model import FINAL_CODES
from sipline.logs import event

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = [
    "Attempt",
    "CarrierStats",
    "MediaQuality",
    "QualityFigures",
    "StatsSnapshot",
    "media_quality",
    "open_stats",
]

log = logging.getLogger("sipline.acr.stats")

KEY_PREFIX = "sipline:acr:stats:"
RELAY_CALL = "sipline:relay:call:"  # relay.publish.KEY_PREFIX (a role does not import another)
GENERATION = 32  # half-lives per generation

# Final codes that say the carrier connected the call to the callee or the
# number even though it was not answered (E.425 "network effectiveness").
CONNECTED_CODES = FINAL_CODES | {480}

# Indexes of the decayed sums kept per (carrier, prefix).
METRICS = (
    "attempts",
    "answered",
    "connected",
    "pdd_n",
    "pdd_sum",
    "ended",
    "duration_sum",
    "media_n",
    "mos_sum",
    "jitter_sum",
    "loss_sum",
)
(
    ATTEMPTS,
    ANSWERED,
    CONNECTED,
    PDD_N,
    PDD_SUM,
    ENDED,
    DURATION_SUM,
    MEDIA_N,
    MOS_SUM,
    JITTER_SUM,
    LOSS_SUM,
) = range(len(METRICS))

Key = tuple[str, str]  # (carrier, prefix)


@dataclass(frozen=True, slots=True)
class Attempt:
    """One try of one carrier for one call, and how it ended."""

    carrier: str
    prefix: str  # the destination prefix the statistics are kept for
    gateway: str  # HOST:PORT
    start: float
    code: int  # the final SIP code; 408 when the carrier did not answer in time
    pdd: float | None = None  # seconds to the first provisional response; None: none came
    answered: bool = False

    @property
    def connected(self) -> bool:
        return self.answered or 200 <= self.code < 300 or self.code in CONNECTED_CODES


@dataclass(frozen=True, slots=True)
class MediaQuality:
    """What the relay measured of a call's media (the worst direction's MOS)."""

    mos: float | None = None
    jitter: float | None = None  # milliseconds
    loss: float | None = None  # share of packets lost, 0..1


@dataclass(frozen=True, slots=True)
class QualityFigures:
    """Decayed figures of a carrier towards a prefix; counts are floats (weights)."""

    attempts: float = 0.0
    answered: float = 0.0
    connected: float = 0.0  # answered or ended by the callee/number (NER's numerator)
    asr: float = 0.0  # answered / attempts (0 when there were none)
    ner: float = 0.0  # connected / attempts
    pdd_mean: float | None = None  # seconds
    acd_mean: float | None = None  # seconds, over answered calls that ended
    mos: float | None = None
    jitter: float | None = None  # ms
    loss: float | None = None  # 0..1
    pdd_samples: float = 0.0
    ended: float = 0.0
    media_samples: float = 0.0


EMPTY = QualityFigures()


def figures(sums: Sequence[float], factor: float) -> QualityFigures:
    """QualityFigures of scaled sums; ``factor`` turns them into weights now."""
    attempts = sums[ATTEMPTS]
    pdd_n, ended, media_n = sums[PDD_N], sums[ENDED], sums[MEDIA_N]
    return QualityFigures(
        attempts=attempts * factor,
        answered=sums[ANSWERED] * factor,
        connected=sums[CONNECTED] * factor,
        asr=min(1.0, sums[ANSWERED] / attempts) if attempts > 0 else 0.0,
        ner=min(1.0, sums[CONNECTED] / attempts) if attempts > 0 else 0.0,
        pdd_mean=sums[PDD_SUM] / pdd_n if pdd_n > 0 else None,
        acd_mean=sums[DURATION_SUM] / ended if ended > 0 else None,
        mos=sums[MOS_SUM] / media_n if media_n > 0 else None,
        jitter=sums[JITTER_SUM] / media_n if media_n > 0 else None,
        loss=sums[LOSS_SUM] / media_n if media_n > 0 else None,
        pdd_samples=pdd_n * factor,
        ended=ended * factor,
        media_samples=media_n * factor,
    )


def media_quality(fields: dict[str, str]) -> MediaQuality | None:
    """The relay's hash for a call (relay.publish.CallQuality.fields) as MediaQuality."""
    mos_text = fields.get("mos", "")
    mos = float(mos_text) if mos_text else None
    jitter = loss = None
    streams = orjson.loads(fields.get("streams") or "[]")
    if streams:
        jitter = max(float(s["jitter_ms"]) for s in streams)
        expected = sum(int(s["expected"]) for s in streams)
        if expected > 0:
            loss = min(1.0, max(0.0, sum(int(s["lost"]) for s in streams) / expected))
    if mos is None and jitter is None:
        return None
    return MediaQuality(mos, jitter, loss)


PACKED = struct.Struct(f"<{len(METRICS)}d")


def _decode(raw: dict[bytes, bytes]) -> Iterator[tuple[Key, str, tuple[float, ...]]]:
    """(carrier, prefix), node, sums of each field of a generation's hash."""
    for field, value in raw.items():
        try:
            carrier, prefix, node = field.decode().rsplit("|", 2)
            yield (carrier, prefix), node, PACKED.unpack(value)
        except (ValueError, struct.error):  # not ours: skip, never fail the sync
            continue


def _field(key: Key, node: str) -> str:
    return f"{key[0]}|{key[1]}|{node}"


class StatsSnapshot:
    """CarrierStats' figures frozen at one time (``CarrierStats.snapshot``)."""

    __slots__ = ("sums", "factor")

    def __init__(self, sums: dict[Key, tuple[float, ...]], factor: float) -> None:
        self.sums = sums
        self.factor = factor

    def quality(self, carrier: str, prefix: str) -> QualityFigures:
        sums = self.sums.get((carrier, prefix))
        return EMPTY if sums is None else figures(sums, self.factor)

    def pairs(self) -> list[Key]:
        return list(self.sums)


@dataclass(slots=True)
class _Pending:
    """A call that ended; its media figures are fetched from the relay's hash at ``due``."""

    call_id: str
    key: Key
    due: float
    tries: int = 0


class CarrierStats:
    """Decayed statistics, in process (``redis`` None) or shared through Redis.

    ``clock`` is wall-clock time (both ACR nodes must agree on it); ``node``
    names this node's fields (the same across its restarts).
    """

    MEDIA_DELAY = 2.0  # the relay publishes when the call is deleted, after the BYE
    MEDIA_TRIES = 5
    MAX_PENDING = 100_000

    def __init__(
        self,
        half_life: float,
        redis: Redis | None = None,
        *,
        node: str = "local",
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not half_life > 0:
            raise ValueError("half_life must be > 0")
        self.half_life = half_life
        self.redis = redis
        self.node = node
        self.clock = clock
        self.link = Link("stats")
        self.span = GENERATION * half_life
        self.generation = self._generation(clock())
        # The other nodes' sums at the last pull plus this node's, scaled to this
        # generation's epoch.
        self.picture: dict[Key, list[float]] = {}
        self.others: dict[Key, list[float]] = {}  # the other nodes' sums, so scaled
        # generation -> key -> this node's sums, scaled to that generation's epoch.
        self.own: dict[int, dict[Key, list[float]]] = {}
        self.dirty: dict[int, set[Key]] = {}  # this node's sums changed since written
        self.adopted = False  # this node's sums from before its start are taken from Redis
        self.pending: list[_Pending] = []
        self.version = 0  # changes whenever the figures may have changed
        self.owns_redis = False

    # -- recording (call path: no I/O) --

    def record_attempt(self, attempt: Attempt) -> None:
        weight = self._weight()
        values = {ATTEMPTS: weight}
        if attempt.answered:
            values[ANSWERED] = weight
        if attempt.connected:
            values[CONNECTED] = weight
        if attempt.pdd is not None:
            values[PDD_N] = weight
            values[PDD_SUM] = weight * attempt.pdd
        self._add((attempt.carrier, attempt.prefix), values)

    def record_call_end(
        self,
        carrier: str,
        prefix: str,
        duration: float,
        quality: MediaQuality | None = None,
        *,
        call_id: str | None = None,
    ) -> None:
        """An answered call ended after ``duration`` seconds.

        With no ``quality`` but a ``call_id`` and Redis, the relay's figures for
        the call are fetched by a later ``sync()`` (the call path does not wait).
        """
        key = (carrier, prefix)
        weight = self._weight()
        self._add(key, {ENDED: weight, DURATION_SUM: weight * max(0.0, duration)})
        if quality is not None:
            self.record_media(carrier, prefix, quality)
        elif call_id and self.redis is not None and len(self.pending) < self.MAX_PENDING:
            self.pending.append(_Pending(call_id, key, self.clock() + self.MEDIA_DELAY))

    def record_media(self, carrier: str, prefix: str, quality: MediaQuality) -> None:
        if quality.mos is None:
            return
        weight = self._weight()
        values = {MEDIA_N: weight, MOS_SUM: weight * quality.mos}
        # Unknown jitter/loss count as none: the relay knows both whenever it knows MOS.
        values[JITTER_SUM] = weight * (quality.jitter or 0.0)
        values[LOSS_SUM] = weight * (quality.loss or 0.0)
        self._add((carrier, prefix), values)

    def _weight(self) -> float:
        now = self.clock()
        return 2.0 ** ((now - self.generation * self.span) / self.half_life)

    def _add(self, key: Key, values: dict[int, float]) -> None:
        sums = self.picture.get(key)
        if sums is None:
            sums = self.picture[key] = [0.0] * len(METRICS)
        own = self.own.setdefault(self.generation, {})
        mine = own.get(key)
        if mine is None:
            mine = own[key] = [0.0] * len(METRICS)
        for index, value in values.items():
            sums[index] += value
            mine[index] += value
        self.dirty.setdefault(self.generation, set()).add(key)
        self.version += 1

    # -- reading (call path and ranking: no I/O) --

    def quality(self, carrier: str, prefix: str, now: float | None = None) -> QualityFigures:
        sums = self.picture.get((carrier, prefix))
        if sums is None:
            return EMPTY
        return figures(sums, self._factor(self.clock() if now is None else now))

    def pairs(self) -> list[Key]:
        """The (carrier, prefix) pairs with any figures, for a bulk refresh."""
        return list(self.picture)

    def by_carrier(self, now: float | None = None) -> dict[str, QualityFigures]:
        """Each carrier's figures over every prefix it was tried for (for /metrics)."""
        totals: dict[str, list[float]] = {}
        for (carrier, _), sums in list(self.picture.items()):
            total = totals.get(carrier)
            if total is None:
                total = totals[carrier] = [0.0] * len(METRICS)
            for i, value in enumerate(sums):
                total[i] += value
        factor = self._factor(self.clock() if now is None else now)
        return {carrier: figures(sums, factor) for carrier, sums in totals.items()}

    def snapshot(self, now: float | None = None) -> StatsSnapshot:
        """A frozen copy of the figures as at ``now``, which another thread may read
        (a re-ranking off the event loop) while this object goes on changing."""
        factor = self._factor(self.clock() if now is None else now)
        return StatsSnapshot({key: tuple(sums) for key, sums in self.picture.items()}, factor)

    def _factor(self, now: float) -> float:
        return 2.0 ** (-(now - self.generation * self.span) / self.half_life)

    def _generation(self, now: float) -> int:
        return math.floor(now / self.span)

    # -- sharing --

    def _roll(self, now: float) -> None:
        """Move the picture's epoch to the current generation's."""
        generation = self._generation(now)
        if generation <= self.generation:
            return
        scale = 2.0 ** (-(generation - self.generation) * GENERATION)
        for sums in (*self.picture.values(), *self.others.values()):
            for i, value in enumerate(sums):
                sums[i] = value * scale
        self.generation = generation
        for gone in [g for g in self.own if g < generation - 1]:
            del self.own[gone]
            self.dirty.pop(gone, None)
        self.version += 1

    async def sync(self) -> None:
        """Write this node's changed sums, pull the shared picture; never raises (Redis
        away: retried next time)."""
        now = self.clock()
        self._roll(now)
        if self.redis is None:
            return
        due = [p for p in self.pending if p.due <= now]
        generation = self.generation
        dirty: dict[int, set[Key]] = {}
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                if self.adopted:
                    dirty, self.dirty = self.dirty, {}
                    self._write(pipe, dirty)
                pipe.hgetall(f"{KEY_PREFIX}{generation}")
                pipe.hgetall(f"{KEY_PREFIX}{generation - 1}")
                for p in due:
                    pipe.hgetall(RELAY_CALL + p.call_id)
                replies = await pipe.execute()
            self.link.succeeded()
            media = replies[len(replies) - len(due) :] if due else []
            current, previous = replies[len(replies) - len(due) - 2 : len(replies) - len(due)]
            if self._pulled(current, previous):  # Redis lost (some of) this node's sums
                async with self.redis.pipeline(transaction=False) as pipe:
                    dirty, self.dirty = self.dirty, {}
                    self._write(pipe, dirty)
                    await pipe.execute()
        except redis_errors() as exc:
            self.link.failed(exc)
            for gen, keys in dirty.items():  # written again next time
                self.dirty.setdefault(gen, set()).update(keys)
            return
        self._media(due, media, now)

    def _write(self, pipe: Any, dirty: dict[int, set[Key]]) -> None:
        """This node's sums of ``dirty`` into the generations' hashes, as they are now."""
        ttl = math.ceil(2 * self.span + 60)  # while it or the next generation is read
        for gen, keys in dirty.items():
            own = self.own.get(gen)
            if not own or not keys:
                continue
            mapping = {_field(key, self.node): PACKED.pack(*own[key]) for key in keys}
            pipe.hset(f"{KEY_PREFIX}{gen}", mapping=mapping)
            pipe.expire(f"{KEY_PREFIX}{gen}", ttl)

    def _pulled(self, current: dict[bytes, bytes], previous: dict[bytes, bytes]) -> bool:
        """Take the other nodes' sums; True when this node's own must be written again
        (Redis lost them, or they were just taken back after a start)."""
        others: dict[Key, list[float]] = {}
        lost = False
        for gen, raw, scale in (
            (self.generation, current, 1.0),
            (self.generation - 1, previous, 2.0**-GENERATION),
        ):
            own = self.own.setdefault(gen, {})
            found = 0
            for key, node, values in _decode(raw):
                if node == self.node:
                    found += 1
                    if not self.adopted:  # this node's sums from before its start
                        mine = own.setdefault(key, [0.0] * len(METRICS))
                        for i, value in enumerate(values):
                            mine[i] += value
                    continue
                sums = others.get(key)
                if sums is None:
                    sums = others[key] = [0.0] * len(METRICS)
                for i, value in enumerate(values):
                    sums[i] += value * scale
            if not self.adopted or found < len(own):
                self.dirty.setdefault(gen, set()).update(own)
                lost = lost or bool(own)
        self.adopted = True
        self.others = others
        self._picture()
        return lost

    def _picture(self) -> None:
        picture = {key: list(sums) for key, sums in self.others.items()}
        for gen, own in self.own.items():
            scale = 2.0 ** ((gen - self.generation) * GENERATION)
            for key, values in own.items():
                sums = picture.get(key)
                if sums is None:
                    sums = picture[key] = [0.0] * len(METRICS)
                for i, value in enumerate(values):
                    sums[i] += value * scale
        self.picture = picture
        self.version += 1

    def _media(self, due: list[_Pending], replies: list[dict[bytes, bytes]], now: float) -> None:
        if not due:
            return
        done: set[int] = set()
        for p, raw in zip(due, replies, strict=True):
            p.tries += 1
            fields = {k.decode(): v.decode() for k, v in raw.items()}
            final = fields.get("state", "active") != "active"
            if not final and p.tries < self.MEDIA_TRIES:
                p.due = now + self.MEDIA_DELAY
                continue
            done.add(id(p))
            try:
                quality = media_quality(fields) if fields else None
            except (ValueError, KeyError, TypeError) as exc:
                event(log, "bad_media_figures", logging.DEBUG, call_id=p.call_id, error=exc)
                continue
            if quality is not None:
                self.record_media(*p.key, quality)
        self.pending = [p for p in self.pending if id(p) not in done]

    async def close(self) -> None:
        """Push what is left; let go of the Redis client if this object opened it."""
        await self.sync()
        if self.redis is not None and self.owns_redis:
            await self.redis.aclose()


def open_stats(
    redis_url: str | None,
    half_life: float,
    *,
    node: str = "local",
    clock: Callable[[], float] = time.time,
) -> CarrierStats:
    """Statistics shared through Redis at ``redis_url``, or in process when it is None."""
    redis = open_redis(redis_url) if redis_url else None
    stats = CarrierStats(half_life, redis, node=node, clock=clock)
    stats.owns_redis = True
    return stats
