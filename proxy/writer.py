"""Group commit of binding changes: one writer task, many REGISTERs per transaction.

``submit`` queues a ``Change`` (what one REGISTER, or one removal, asks of the
database) with a ``done`` callback; no task per REGISTER. The writer takes a
batch when the queue holds ``commit_rows`` rows or its oldest change is
``commit_ms`` old, writes it in one transaction and only then calls every
change's ``done`` (None, or the StorageError that failed the batch), so a
200 OK never goes out for a binding the database does not hold.

The expiry sweep runs in the same task, between batches: writes and deletes
reach the database in the order they were decided.

Each batch is one version of the location (proxy/location_store.py): every
change learns it (``Change.version``) before its ``done`` is called, and
``committed`` (the location feed's, proxy/feed.py) hears it after.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from proxy.location import Binding, BindingKey
from proxy.location_store import LocationStore, Removal
from sipline.logs import event
from sipline.storage import StorageError

log = logging.getLogger("sipline.proxy.writer")

Done = Callable[[StorageError | None], None]


@dataclass(slots=True)
class Change:
    upserts: Sequence[Binding]
    removals: Sequence[Removal]
    done: Done
    queued_at: float = field(default=0.0, compare=False)
    version: int = field(default=0, compare=False)  # the batch's, once committed

    @property
    def rows(self) -> int:
        return len(self.upserts) + len(self.removals) or 1


def coalesce(changes: Iterable[Change]) -> tuple[list[Binding], list[Removal]]:
    """The net effect of ``changes`` in order, one operation per key.

    A conditional removal (NAT pings failed) that follows an upsert of its key
    in the same batch applies only if that upsert is the binding it meant."""
    final: dict[BindingKey, Binding | Removal] = {}
    for change in changes:
        for removal in change.removals:
            key = (removal.aor, removal.contact)
            before = final.get(key)
            if removal.expires_at is None or before is None:
                final[key] = removal
            elif isinstance(before, Binding) and before.expires_at == removal.expires_at:
                final[key] = Removal(*key)
        for binding in change.upserts:
            final[binding.key] = binding
    upserts = [op for op in final.values() if isinstance(op, Binding)]
    removals = [op for op in final.values() if isinstance(op, Removal)]
    return upserts, removals


class BindingWriter:
    """The one task that writes bindings; counters ``commits``, ``rows``, ``failures``."""

    def __init__(
        self,
        store: LocationStore,
        commit_rows: int,
        commit_ms: float,
        committed: Callable[[int], None] | None = None,
    ) -> None:
        self.store = store
        self.committed = committed
        self.commit_rows = commit_rows
        self.linger = commit_ms / 1000
        self.commits = 0
        self.rows = 0
        self.failures = 0
        self._queue: deque[Change] = deque()
        self._queued_rows = 0
        self._sweep_at: float | None = None
        self._adopted: tuple[str, ...] = ()
        self._wakeup: asyncio.Future[None] | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="binding-writer")

    async def close(self) -> None:
        """Write what is queued, then stop."""
        self._closing = True
        self._wake()
        if self._task is not None:
            await self._task
            self._task = None

    @property
    def pending(self) -> int:
        return len(self._queue)

    def submit(self, change: Change) -> None:
        if self._closing:
            change.done(StorageError("the binding writer is closed"))
            return
        change.queued_at = asyncio.get_running_loop().time()
        self._queue.append(change)
        self._queued_rows += change.rows
        if len(self._queue) == 1 or self._queued_rows >= self.commit_rows:
            self._wake()

    def forget(self, binding: Binding) -> None:
        """Delete ``binding``'s row if it still has this expiry (Location.remove)."""
        removal = Removal(binding.aor, binding.contact, binding.expires_at)
        self.submit(Change((), (removal,), _log_failure(binding)))

    def sweep(self, now: float, adopted: Iterable[str] = ()) -> None:
        """Ask for the expiry sweep of this node's rows (and of the ``adopted``
        nodes'), run between batches."""
        self._sweep_at = now
        self._adopted = tuple(adopted)
        self._wake()

    # -- the task ----------------------------------------------------------------
    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._queue and self._sweep_at is None:
                if self._closing:
                    return
                await self._sleep(None)
                continue
            if self._queue and not self._closing and self._queued_rows < self.commit_rows:
                delay = self._queue[0].queued_at + self.linger - loop.time()
                if delay > 0:
                    await self._sleep(delay)
                    continue
            if self._queue:
                await self._commit(self._take())
            if self._sweep_at is not None:
                now, self._sweep_at = self._sweep_at, None
                await self._sweep(now)

    async def _sleep(self, timeout: float | None) -> None:
        loop = asyncio.get_running_loop()
        self._wakeup = wakeup = loop.create_future()
        timer = loop.call_later(timeout, self._wake) if timeout is not None else None
        try:
            await wakeup
        finally:
            self._wakeup = None
            if timer is not None:
                timer.cancel()

    def _wake(self) -> None:
        if self._wakeup is not None and not self._wakeup.done():
            self._wakeup.set_result(None)

    def _take(self) -> list[Change]:
        batch = [self._queue.popleft()]
        rows = batch[0].rows
        while self._queue and rows + self._queue[0].rows <= self.commit_rows:
            change = self._queue.popleft()
            batch.append(change)
            rows += change.rows
        self._queued_rows -= rows
        return batch

    async def _commit(self, batch: list[Change]) -> None:
        upserts, removals = coalesce(batch)
        error: StorageError | None = None
        version = 0
        try:
            version = await self.store.write(upserts, removals, time.time())
        except StorageError as exc:
            error = exc
        except Exception as exc:  # a driver error nobody translated: still no 200
            log.exception("event=binding_commit_error")
            error = StorageError(f"binding commit failed: {type(exc).__name__}")
        if error is None:
            self.commits += 1
            self.rows += len(upserts) + len(removals)
            for change in batch:
                change.version = version
        else:
            self.failures += 1
            event(log, "binding_commit_failed", logging.ERROR, changes=len(batch), error=error)
        for change in batch:
            try:
                change.done(error)
            except Exception:
                log.exception("event=binding_callback_error")
        if error is None and self.committed is not None:
            self.committed(version)

    async def _sweep(self, now: float) -> None:
        try:
            swept = await self.store.sweep(now, self._adopted)
        except StorageError as exc:  # the next sweep tries again
            event(log, "binding_sweep_failed", logging.WARNING, error=exc)
            return
        if swept:
            event(log, "bindings_swept", logging.DEBUG, rows=swept)


def _log_failure(binding: Binding) -> Done:
    def done(error: StorageError | None) -> None:
        if error is not None:  # the row expires and is swept; say why it lingers
            event(log, "binding_removal_failed", logging.WARNING, aor=binding.aor,
                  contact=binding.contact, error=error)  # fmt: skip

    return done
