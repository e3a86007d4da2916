"""Who may register and call here: the served domains and an in-memory subscriber directory.

The directory is the subscribers table held in memory, so authenticating a
request costs no database round trip. It is loaded at start and reloaded
every ``refresh_interval``; a name it does not know is fetched on its own in
the background (one task for the directory, one query at a time, at most one
per name per ``miss_interval``, at most ``max_wanted`` names waiting). A
request that needs the answer (credentials of a user the view lacks: a
subscriber provisioned a moment ago) waits for it with ``lookup``, a future
shared by every request for that name, for ``wait`` seconds at most.
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
Found = asyncio.Future[Subscriber | None]
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
        wait: float = 1.0,
        max_wanted: int = MAX_WANTED,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._source = source
        self._by_key: dict[Key, Subscriber] = {(s.username, s.domain): s for s in subscribers}
        self._refresh_interval = refresh_interval
        self._miss_interval = miss_interval
        self._wait = wait
        self._max_wanted = max_wanted
        self._clock = clock
        self._asked: dict[Key, float] = {}  # when each missing name was last queried, oldest first
        # Names to fetch, in order, with the future of the requests waiting for each (if any).
        self._wanted: dict[Key, Found | None] = {}
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

    def lookup(self, username: str, domain: str) -> Subscriber | None | Found:
        """The subscriber, or, when the view lacks the name, a future of the table's answer.

        The future gives the subscriber or None (not in the table); it fails
        (TimeoutError, StorageError) when the table did not answer within
        ``wait``. None at once for a name found missing less than
        ``miss_interval`` ago, or with ``max_wanted`` names waiting already.
        """
        key = (username, domain.lower())
        found = self._by_key.get(key)
        if found is not None or self._source is None:
            return found
        self._miss(key)
        if key not in self._wanted:
            return None
        waiting = self._wanted[key]
        if waiting is None:
            loop = asyncio.get_running_loop()
            waiting = self._wanted[key] = loop.create_future()
            loop.call_later(self._wait, _fail, waiting, TimeoutError)
        return waiting

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
        for waiting in self._wanted.values():
            _fail(waiting, StorageError("subscriber directory closed"))
        self._wanted.clear()

    def _miss(self, key: Key) -> None:
        if self._source is None or key in self._wanted or len(self._wanted) >= self._max_wanted:
            return
        now = self._clock()
        asked = self._asked
        if now - asked.get(key, -self._miss_interval) < self._miss_interval:
            return
        asked.pop(key, None)  # to the end: the dict stays in order of asking
        asked[key] = now
        # What is older than the interval needs no remembering: a stranger
        # asking for made-up names must not grow it without bound.
        while asked and now - next(iter(asked.values())) >= self._miss_interval:
            del asked[next(iter(asked))]
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
            try:
                found = await self._source.get(*key)
            except BaseException:  # asked once even so (no busy retry); the waiters are told
                _fail(self._wanted.pop(key, None), StorageError("subscriber lookup failed"))
                raise
            if found is not None:
                self._by_key[key] = found
                event(log, "subscriber_found", logging.DEBUG, aor=found.aor)
            _settle(self._wanted.pop(key, None), found)


def _settle(future: Found | None, found: Subscriber | None) -> None:
    if future is not None and not future.done():
        future.set_result(found)


def _fail(future: Found | None, error: type[BaseException] | BaseException) -> None:
    if future is not None and not future.done():
        future.set_exception(error)
