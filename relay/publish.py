"""Per-call media quality, published for the ACR to use as carrier quality.

``CallQuality`` summarises a call's streams (what the relay received from
each party: packets, loss, jitter, MOS). A ``QualitySink`` takes one without
blocking: ``MemoryQuality`` keeps the latest per call in process (the
embedded default); ``RedisQuality`` writes, from a task of its own, a hash per
call (``sipline:relay:call:<call-id>``, expiring) and, when a call ends, an
entry on the stream ``sipline:relay:quality``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Protocol

import orjson

from relay.sessions import Call
from sipline.logs import event

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = [
    "CallQuality",
    "MemoryQuality",
    "QualitySink",
    "RedisQuality",
    "StreamQuality",
    "open_quality_sink",
]

log = logging.getLogger("sipline.relay.quality")

KEY_PREFIX = "sipline:relay:call:"
STREAM = "sipline:relay:quality"
ACTIVE = "active"


@dataclass(frozen=True, slots=True)
class StreamQuality:
    """RTP received from party ``tag`` on media section ``index``."""

    tag: str
    index: int
    kind: str
    codec: str
    packets: int
    bytes: int
    lost: int
    expected: int
    jitter_ms: float
    mos: float


@dataclass(frozen=True, slots=True)
class CallQuality:
    call_id: str
    state: str
    """"active", or how it ended: "deleted", "timeout"."""
    at: float
    """Wall-clock time of the figures."""
    streams: tuple[StreamQuality, ...]

    @classmethod
    def of(cls, call: Call, state: str, at: float) -> CallQuality:
        streams = []
        for party in call.parties:
            for media in party.media:
                stats = media.rtp.stats
                if stats is None or not media.rtp.packets:
                    continue
                streams.append(
                    StreamQuality(
                        party.tag,
                        media.index,
                        media.kind,
                        stats.codec.name,
                        media.rtp.packets,
                        media.rtp.bytes,
                        stats.lost,
                        stats.expected,
                        round(stats.jitter_ms, 3),
                        round(stats.mos(), 2),
                    )
                )
        return cls(call.call_id, state, at, tuple(streams))

    @property
    def mos(self) -> float | None:
        """The worst direction's MOS; None when no RTP flowed."""
        return min((s.mos for s in self.streams), default=None)

    def fields(self) -> dict[str, str]:
        """Flat string fields for a Redis hash (streams as JSON)."""
        mos = self.mos
        return {
            "call-id": self.call_id,
            "state": self.state,
            "at": f"{self.at:.3f}",
            "mos": "" if mos is None else f"{mos:.2f}",
            "packets": str(sum(s.packets for s in self.streams)),
            "lost": str(sum(s.lost for s in self.streams)),
            "streams": orjson.dumps([asdict(s) for s in self.streams]).decode(),
        }


class QualitySink(Protocol):
    def publish(self, quality: CallQuality) -> None:
        """Take the figures without blocking the caller."""

    async def start(self) -> None: ...

    async def close(self) -> None:
        """Write what is pending, then let go of any connection."""


class MemoryQuality:
    """The latest figures of the last ``keep`` calls, in process."""

    def __init__(self, keep: int = 10_000) -> None:
        self.keep = keep
        self.calls: OrderedDict[str, CallQuality] = OrderedDict()

    def publish(self, quality: CallQuality) -> None:
        self.calls[quality.call_id] = quality
        self.calls.move_to_end(quality.call_id)
        while len(self.calls) > self.keep:
            self.calls.popitem(last=False)

    def get(self, call_id: str) -> CallQuality | None:
        return self.calls.get(call_id)

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass


class RedisQuality:
    """Writes figures to Redis from one task; a full queue drops the oldest and counts it."""

    def __init__(
        self, client: Redis, *, ttl: int = 3600, stream_maxlen: int = 100_000, queue: int = 10_000
    ) -> None:
        self.client = client
        self.ttl = ttl
        self.stream_maxlen = stream_maxlen
        self.dropped = 0
        self._queue: asyncio.Queue[CallQuality] = asyncio.Queue(queue)
        self._task: asyncio.Task[None] | None = None

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> RedisQuality:
        from sipline.storage.live import open_redis

        return cls(open_redis(url), **kwargs)  # a Sentinel URL follows a promoted master

    def publish(self, quality: CallQuality) -> None:
        if self._queue.full():
            self._queue.get_nowait()
            self.dropped += 1
        self._queue.put_nowait(quality)

    async def start(self) -> None:
        from redis.exceptions import RedisError

        try:
            await self.client.ping()  # fail at start, not on the first call
        except RedisError as exc:
            raise OSError(f"Redis for call quality: {exc}") from None
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            quality = await self._queue.get()
            try:
                await self.write(quality)
            except Exception as exc:  # Redis down: log and go on, the relay must not stop
                event(log, "quality_write_failed", logging.WARNING, error=exc)
            finally:
                self._queue.task_done()

    async def write(self, quality: CallQuality) -> None:
        key = KEY_PREFIX + quality.call_id
        fields = quality.fields()
        async with self.client.pipeline(transaction=False) as pipe:
            pipe.hset(key, mapping=fields)
            pipe.expire(key, self.ttl)
            if quality.state != ACTIVE:
                pipe.xadd(STREAM, fields, maxlen=self.stream_maxlen, approximate=True)
            await pipe.execute()

    async def close(self, timeout: float = 2.0) -> None:
        if self._task is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._queue.join(), timeout)
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.client.aclose()


def open_quality_sink(redis_url: str | None) -> QualitySink:
    """Redis when a URL is configured, else in process."""
    return RedisQuality.from_url(redis_url) if redis_url else MemoryQuality()
