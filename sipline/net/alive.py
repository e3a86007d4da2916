"""Which nodes of a role are alive, seen through Redis.

Every node writes ``sipline:alive:ROLE:NAME`` with a time to live of
``SILENCE`` seconds once per ``INTERVAL`` and adds its name to the set
``sipline:members:ROLE``; a node whose key is gone has been silent for
``SILENCE`` seconds (Redis's clock decides, not the nodes'). Each beat also
reads the live names back, so ``alive`` is at most a beat old.

When Redis does not answer, ``alive`` keeps what was last seen (nothing is
taken over on the word of a Redis that is away) and the outage is logged
once. The node heartbeats of ``sipline status`` (the cluster's
administration) carry the same information; this module is the part a proxy
needs to decide who keeps a dead node's bindings (proxy/cluster.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

from sipline.storage.live import Link, redis_errors

if TYPE_CHECKING:
    from redis.asyncio import Redis

log = logging.getLogger("sipline.alive")

ALIVE = "sipline:alive:"
MEMBERS = "sipline:members:"
INTERVAL = 1.0  # seconds between beats
SILENCE = 3.0  # seconds without a beat after which a node is dead


class Liveness:
    """This node's beat and the names of the live nodes of its role."""

    def __init__(
        self, redis: Redis, role: str, name: str, *, interval: float = INTERVAL,
        silence: float = SILENCE,
    ) -> None:  # fmt: skip
        self.redis = redis
        self.name = name
        self.interval = interval
        self.silence = silence
        self.alive: frozenset[str] = frozenset((name,))
        self.members: frozenset[str] = frozenset((name,))  # every name ever seen beating
        self.link = Link("liveness", log)
        self._key = f"{ALIVE}{role}:{name}"
        self._prefix = f"{ALIVE}{role}:"
        self._members = MEMBERS + role
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="liveness")

    async def close(self) -> None:
        """Stop beating and say so at once (the others need not wait ``SILENCE``)."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        with contextlib.suppress(*redis_errors()):
            await self.redis.delete(self._key)

    async def beat(self) -> None:
        """Write our key, then read which names are alive."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.set(self._key, b"1", px=int(self.silence * 1000))
            pipe.sadd(self._members, self.name)
            pipe.smembers(self._members)
            _, _, members = await pipe.execute()
        names = sorted(m.decode() for m in members)
        beats = await self.redis.mget([self._prefix + n for n in names]) if names else []
        self.members = frozenset(names)
        self.alive = frozenset(n for n, b in zip(names, beats, strict=True) if b is not None)

    async def _run(self) -> None:
        while True:
            try:
                await self.beat()
            except redis_errors() as exc:
                self.link.failed(exc)
            else:
                self.link.succeeded()
            await asyncio.sleep(self.interval)
