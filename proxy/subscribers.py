"""Who may register and call here: the served domains and an in-memory subscriber directory.

The directory is the subscribers table held in memory, so authenticating a
request costs no database round trip. It is loaded at start and reloaded
every ``refresh_interval``; a name it does not know is fetched on its own in
the background (one task for the directory, at most one query per name per
``miss_interval``), so a subscriber provisioned a moment ago is known by the
time its phone answers the first challenge.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable

from sipline.logs import event
from sipline.storage import StorageError, Subscriber, Subscribers

log = logging.getLogger("sipline.proxy.subscribers")

Key = tuple[str, str]  # (username, domain)
MAX_WANTED = 1000  # names waiting to be fetched; beyond that a miss is not fetched


class ServedDomains:
    """The domains this proxy serves; ``aliases`` (its own addresses) stand for the first."""

    __slots__ = ("domains", "aliases")

    def __init__(self, domains: Iterable[str], aliases: Iterable[str] = ()) -> None:
        self.domains = tuple(domain.lower() for domain in domains)
        if not self.domains:
            raise ValueError("at least one domain must be served")
        self.aliases = frozenset(alias.lower().strip("[]") for alias in aliases)

    def canonical(self, host: str) -> str | None:
        """The served domain ``host`` names, or None when it is not ours."""
        host = host.lower()
        if host in self.domains:
            return host
        if host.strip("[]") in self.aliases:
            return self.domains[0]
        return None


class SubscriberDirectory:
    """Subscribers by (username, domain); ``get`` never waits on the database."""

    def __init__(
        self,
        source: Subscribers | None = None,
        subscribers: Iterable[Subscriber] = (),
        *,
        refresh_interval: float = 60.0,
        miss_interval: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._source = source
        self._by_key: dict[Key, Subscriber] = {(s.username, s.domain): s for s in subscribers}
        self._refresh_interval = refresh_interval
        self._miss_interval = miss_interval
        self._clock = clock
        self._asked: dict[Key, float] = {}  # when each missing name was last queried
        self._wanted: dict[Key, None] = {}  # names to fetch, in order
        self._wakeup: asyncio.Future[None] | None = None
        self._task: asyncio.Task[None] | None = None

    def __len__(self) -> int:
        return len(self._by_key)

    def get(self, username: str, domain: str) -> Subscriber | None:
        key = (username, domain.lower())
        found = self._by_key.get(key)
        if found is None:
            self._miss(key)
        return found

    def known(self, aor: str) -> bool:
        username, _, domain = aor.rpartition("@")
        return self.get(username, domain) is not None

    # -- keeping up with the table ----------------------------------------------------
    async def load(self) -> None:
        """Replace the view with the table as it is now."""
        if self._source is None:
            return
        fresh = await self._source.list()
        self._by_key = {(s.username, s.domain): s for s in fresh}
        self._asked.clear()

    async def refresh(self, aors: Iterable[str]) -> None:
        """Read these subscribers again now: an operator added, changed or removed them
        (sipline.cluster.changes pushes which)."""
        if self._source is None:
            return
        for aor in aors:
            username, _, domain = aor.rpartition("@")
            key = (username, domain.lower())
            found = await self._source.get(*key)
            if found is None:
                self._by_key.pop(key, None)
            else:
                self._by_key[key] = found
            self._asked.pop(key, None)

    def start(self) -> None:
        """Begin the periodic reload and the fetching of missed names."""
        if self._source is not None and self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="directory")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    def _miss(self, key: Key) -> None:
        if self._source is None or key in self._wanted or len(self._wanted) >= MAX_WANTED:
            return
        now = self._clock()
        if now - self._asked.get(key, -self._miss_interval) < self._miss_interval:
            return
        self._asked[key] = now
        self._wanted[key] = None
        self._wake()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        next_reload = loop.time() + self._refresh_interval
        while True:
            delay = next_reload - loop.time()
            if delay > 0 and not self._wanted:
                await self._sleep(delay)
            try:
                if loop.time() >= next_reload:
                    next_reload = loop.time() + self._refresh_interval
                    await self.load()
                await self._fetch_wanted()
            except StorageError as exc:  # keep serving the view we have
                event(log, "directory_refresh_failed", logging.WARNING, error=exc)

    async def _sleep(self, delay: float) -> None:
        """Until ``delay`` has passed or a miss wants fetching."""
        loop = asyncio.get_running_loop()
        self._wakeup = loop.create_future()
        timer = loop.call_later(delay, self._wake)
        try:
            await self._wakeup
        finally:
            timer.cancel()
            self._wakeup = None

    def _wake(self) -> None:
        if self._wakeup is not None and not self._wakeup.done():
            self._wakeup.set_result(None)

    async def _fetch_wanted(self) -> None:
        assert self._source is not None
        while self._wanted:
            key = next(iter(self._wanted))
            del self._wanted[key]  # asked once even if the query fails (no busy retry)
            found = await self._source.get(*key)
            if found is not None:
                self._by_key[key] = found
                event(log, "subscriber_found", logging.DEBUG, aor=found.aor)
