"""Heartbeats in Redis: every node writes its report once a second, and
``sipline status`` reads them; so does ``Liveness``, the one view of which
nodes of a role are alive (a proxy's, to decide who keeps a dead proxy's
bindings: proxy/cluster.py).

Two keys per node:

- ``sipline:node:NAME``, the report, expiring ``SILENCE`` seconds after the
  last beat: present means alive, and Redis's own clock decides (no
  comparison of the nodes' clocks);
- the field NAME of the hash ``sipline:nodes``, the last report, kept when the
  node stops beating, so a node that died is shown as failed rather than
  forgotten (a clean stop leaves a last report saying so).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

import orjson

from sipline.cluster.report import Report
from sipline.cluster.state import SILENCE, State
from sipline.logs import event
from sipline.storage.live import Link, redis_errors

if TYPE_CHECKING:
    from redis.asyncio import Redis

log = logging.getLogger("sipline.cluster.heartbeat")

ALIVE = "sipline:node:"
NODES = "sipline:nodes"
INTERVAL = 1.0
STOPPED = "exited"  # the detail of a clean stop's last report


class Heartbeat:
    """Beats ``report()`` into Redis every ``INTERVAL`` seconds until ``close``; a node
    silent for ``silence`` seconds is dead."""

    def __init__(
        self, redis: Redis, name: str, report: Callable[[], Report], silence: float = SILENCE
    ) -> None:
        self.redis = redis
        self.name = name
        self.report = report
        self.silence = silence
        self.ok = True
        self._task: asyncio.Task[None] | None = None
        self._nudges: set[asyncio.Task[None]] = set()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    def nudge(self) -> None:
        """Beat now, not at the next second: the state changed (a drain, a resume, a
        config applied) and ``sipline status`` must not show the one before."""
        if self._task is not None:
            task = asyncio.get_running_loop().create_task(self._beat_once())
            self._nudges.add(task)
            task.add_done_callback(self._nudges.discard)

    async def _beat_once(self) -> None:
        try:
            await self.beat()
        except redis_errors():
            pass  # the loop logs Redis going away

    async def beat(self) -> None:
        data = orjson.dumps(self.report().to_json())
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.set(ALIVE + self.name, data, px=int(self.silence * 1000))
            pipe.hset(NODES, self.name, data)
            await pipe.execute()

    async def _run(self) -> None:
        while True:
            try:
                await self.beat()
                if not self.ok:
                    event(log, "heartbeat_back")
                    self.ok = True
            except redis_errors() as exc:
                if self.ok:
                    event(log, "heartbeat_failed", logging.WARNING, error=repr(exc))
                    self.ok = False
            await asyncio.sleep(INTERVAL)

    async def close(self, last: Report) -> None:
        """Stop beating and leave ``last`` (a clean stop) as the node's last word."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, *self._nudges, return_exceptions=True)
            self._task = None
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.delete(ALIVE + self.name)
                pipe.hset(NODES, self.name, orjson.dumps(last.to_json()))
                await pipe.execute()
        except redis_errors() as exc:
            event(log, "heartbeat_not_closed", logging.WARNING, error=repr(exc))


class Liveness:
    """Which nodes of ``role`` beat (``alive``) among those that ever did (``members``),
    as this node ``name`` sees it, looked at every ``INTERVAL`` seconds. Our own
    beat is the node's ``Heartbeat``; this only reads. While Redis does not
    answer, what was last seen is kept (nothing is taken over on the word of a
    Redis that is away) and the outage logged once."""

    def __init__(self, redis: Redis, role: str, name: str, interval: float = INTERVAL) -> None:
        self.redis = redis
        self.role = role
        self.name = name
        self.interval = interval
        self.alive: frozenset[str] = frozenset((name,))
        self.members: frozenset[str] = frozenset((name,))
        self.link = Link("liveness", log)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="liveness")

    async def close(self) -> None:
        """Stop looking (our own goodbye is the heartbeat's)."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def look(self) -> None:
        """Read who of our role beats now (we do, as we run)."""
        last = await self.redis.hgetall(NODES)
        names = sorted(n.decode() for n, data in last.items() if _role(data) == self.role)
        beats = await self.redis.mget([ALIVE + n for n in names]) if names else []
        alive = {n for n, beat in zip(names, beats, strict=True) if beat is not None}
        self.members = frozenset((*names, self.name))
        self.alive = frozenset((*alive, self.name))

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.look()
            except redis_errors() as exc:
                self.link.failed(exc)
            else:
                self.link.succeeded()


def _role(data: bytes) -> str | None:
    try:
        said = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    return said.get("role") if isinstance(said, dict) else None


async def read(redis: Redis) -> list[Report]:
    """Every node's report as an observer shows it: alive ones as they said, the
    others stopped by admin (a clean stop) or by failure, without figures."""
    last = await redis.hgetall(NODES)
    names = [name.decode() for name in last]
    alive = await redis.mget([ALIVE + name for name in names]) if names else []
    reports = []
    for name, beat in zip(names, alive, strict=True):
        try:
            said = Report.from_json(orjson.loads(last[name.encode()]))
            if beat is not None:
                reports.append(Report.from_json(orjson.loads(beat)))
                continue
        except ValueError:  # not written by a node of ours: shown as what we know
            reports.append(
                Report.silent(name, "?", "?", "", State.STOPPED_BY_FAILURE, "bad report")
            )
            continue
        reports.append(gone(said))
    return reports


def gone(said: Report) -> Report:
    """The report of a node that no longer beats, from the last one it wrote."""
    if said.state == State.STOPPED_BY_ADMIN and said.detail == STOPPED:
        state, why = State.STOPPED_BY_ADMIN, STOPPED
    else:
        state, why = State.STOPPED_BY_FAILURE, f"no heartbeat for over {SILENCE:g} s"
    return Report.silent(said.name, said.role, said.address, said.admin, state, why)
