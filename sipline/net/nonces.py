"""Nonce counts shared on Redis by every proxy that shares ``auth.secret``.

Such proxies accept each other's nonces, so a replay sent to another node
than the one that saw the original must fail too: ``SharedNonceCounts.use``
checks that a nonce count is above every one seen with its nonce and records
it, in one Lua script (atomic across nodes), under a key that lives as long
as the nonce. The process's own ``sipline.sip.auth.NonceCounts`` judges
first; this is asked only for counts it accepted. The checks asked in one
turn of the event loop go in one pipeline, with one task for the lot, not
one per request. When Redis does not answer, the answer is None and the
caller keeps its local verdict (the link's outage is logged once).
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from sipline.storage import StorageError
from sipline.storage.database import redact
from sipline.storage.live import Link, open_redis, redis_errors

if TYPE_CHECKING:
    from redis.asyncio import Redis

log = logging.getLogger("sipline.auth")

KEY_PREFIX = "sipline:nonce:"

# KEYS[1] the nonce's key; ARGV[1] the count; ARGV[2] the nonce's remaining lifetime (ms).
_USE = """
local last = redis.call('GET', KEYS[1])
if last and tonumber(last) >= tonumber(ARGV[1]) then
  return 0
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
"""

Answer = asyncio.Future[bool | None]


class SharedNonceCounts:
    """The nonce counts every node sharing one Redis has seen."""

    def __init__(self, redis: Redis, url: str = "") -> None:
        self.redis = redis
        self.url = url
        self.link = Link("nonce counts", log)
        self._script = redis.register_script(_USE)
        self._queue: list[tuple[str, int, int, Answer]] = []
        self._task: asyncio.Task[None] | None = None

    @classmethod
    def from_url(cls, url: str) -> SharedNonceCounts:
        return cls(open_redis(url), url)

    async def check(self) -> None:
        """StorageError naming ``redis.url`` unless Redis answers (checked at start)."""
        try:
            await self.redis.ping()
        except redis_errors() as exc:
            where = redact(self.url)
            raise StorageError(f"redis.url {where}: Redis cannot be reached: {exc}") from None

    def use(self, nonce: str, nc: int, ttl: float) -> Answer:
        """True: ``nc`` is above every count any node saw with ``nonce``, and is
        now recorded for ``ttl`` seconds; False: a replay; None: no answer."""
        loop = asyncio.get_running_loop()
        answer: Answer = loop.create_future()
        self._queue.append((nonce, nc, max(1, int(ttl * 1000)), answer))
        if self._task is None:
            self._task = loop.create_task(self._run(), name="nonce-counts")
        return answer

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        _answer(self._queue, None)
        self._queue = []
        await self.redis.aclose()

    async def _run(self) -> None:
        batch: list[tuple[str, int, int, Answer]] = []
        try:
            while self._queue:
                batch, self._queue = self._queue, []
                _answer(batch, await self._send(batch))
                batch = []
        finally:
            self._task = None
            _answer(batch, None)  # cancelled midway: those get no answer from Redis

    async def _send(self, batch: list[tuple[str, int, int, Answer]]) -> list[bool | None] | None:
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for nonce, nc, ttl, _ in batch:
                    await self._script(keys=[KEY_PREFIX + nonce], args=[nc, ttl], client=pipe)
                replies = await pipe.execute()
        except redis_errors() as exc:
            self.link.failed(exc)
            return None
        self.link.succeeded()
        return [bool(reply) for reply in replies]


def _answer(batch: list[tuple[str, int, int, Answer]], replies: list[bool | None] | None) -> None:
    for index, (_, _, _, answer) in enumerate(batch):
        if not answer.done():
            answer.set_result(None if replies is None else replies[index])
