"""CDRs into the database in batches, and never lost on the way.

``CdrWriter.add(cdr)`` only appends to a list: the call path never waits on
the database. A task writes the list in batches (``batch_rows`` rows, or
whatever came in ``batch_ms``), one INSERT statement per batch.

When the database is down a batch waits in a spool: the Redis stream
``sipline:acr:cdrs`` when Redis is configured (either ACR node may write it
back), else, or when Redis is away too, an append-only journal file under
``journal_dir``. The task retries every ``retry_s`` and writes the spool back
once the database answers, and at ``start()`` (after a restart). A row the
database refuses while it is up (too long a value, a NULL where none may be)
goes to ``error_queue`` with the reason, and the rest of its batch is written.

A replayed batch may hold rows written already (the process stopped between
the commit and the removal from the spool): the unique key (call_id, node,
started_at) makes the database skip them. Rows still in memory are lost only
if the process is killed (SIGKILL) before its next batch; ``close()`` writes
or spools them.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import logging
import os
import time
from pathlib import Path
from typing import Any, Protocol

import orjson

from acr.model import Cdr
from acr.shared import Link, open_redis
from acr.store import CDR_COLUMNS, cdr_row
from sipline import logs
from sipline.storage.database import Database, StorageError
from sipline.storage.error_queue import queue_error

log = logging.getLogger("sipline.acr.cdrs")

STREAM = "sipline:acr:cdrs"
ERROR_SOURCE = "cdrs"
RETRY_SECONDS = 1.0
_VALUES = ", ".join("?" * len(CDR_COLUMNS.split(",")))
_INSERT = {
    "sqlite": f"INSERT INTO cdrs ({CDR_COLUMNS}) VALUES ({_VALUES}) ON CONFLICT DO NOTHING",
    "mysql": f"INSERT INTO cdrs ({CDR_COLUMNS}) VALUES ({_VALUES}) ON DUPLICATE KEY UPDATE id = id",
}


def cdr_json(cdr: Cdr) -> bytes:
    return orjson.dumps(dataclasses.asdict(cdr))


def cdr_from_json(data: bytes | str) -> Cdr:
    values = orjson.loads(data)
    return Cdr(**values)


class Spool(Protocol):
    """Where CDRs wait while the database is down, oldest first."""

    async def append(self, cdrs: list[Cdr]) -> None: ...

    async def oldest(self, limit: int) -> tuple[Any, list[Cdr]] | None:
        """A handle and up to ``limit`` of the oldest CDRs; None when empty."""

    async def remove(self, handle: Any) -> None: ...

    async def close(self) -> None: ...


class Journal:
    """Spooled batches as files ``cdrs-<ns>-<n>.jsonl`` under ``directory``, one CDR a line.

    A batch file is written aside and renamed into place after fsync, so a
    crash leaves either the whole batch or none of it.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._numbers = itertools.count()

    async def append(self, cdrs: list[Cdr]) -> None:
        if not cdrs:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        name = f"cdrs-{time.time_ns():020d}-{os.getpid()}-{next(self._numbers)}.jsonl"
        partial = self.directory / f".{name}.part"
        with partial.open("wb") as handle:
            handle.write(b"".join(cdr_json(cdr) + b"\n" for cdr in cdrs))
            handle.flush()
            os.fsync(handle.fileno())
        partial.rename(self.directory / name)

    def files(self) -> list[Path]:
        try:
            return sorted(self.directory.glob("cdrs-*.jsonl"))
        except OSError:
            return []

    async def oldest(self, limit: int) -> tuple[Path, list[Cdr]] | None:
        # A file holds one batch, so ``limit`` is not needed to keep reads small.
        for path in self.files():
            try:
                lines = path.read_bytes().splitlines()
            except FileNotFoundError:  # the other node sharing the directory took it
                continue
            cdrs = []
            for number, line in enumerate(lines, 1):
                try:
                    cdrs.append(cdr_from_json(line))
                except (ValueError, TypeError) as exc:
                    self._set_aside(path, number, line, exc)
            return path, cdrs
        return None

    def _set_aside(self, path: Path, number: int, line: bytes, exc: Exception) -> None:
        logs.event(log, "cdr_journal_line_unreadable", logging.ERROR, file=path.name, line=number,
                   error=repr(exc))  # fmt: skip
        with (self.directory / "unreadable.jsonl").open("ab") as handle:
            handle.write(line + b"\n")

    async def remove(self, handle: Path) -> None:
        handle.unlink(missing_ok=True)

    async def close(self) -> None:
        pass


class RedisStream:
    """Spooled CDRs as entries of a Redis stream, shared by the ACR nodes."""

    def __init__(self, url: str, key: str = STREAM) -> None:
        self.redis = open_redis(url)
        self.key = key

    async def append(self, cdrs: list[Cdr]) -> None:
        async with self.redis.pipeline(transaction=False) as pipe:
            for cdr in cdrs:
                pipe.xadd(self.key, {"cdr": cdr_json(cdr)})
            await pipe.execute()

    async def oldest(self, limit: int) -> tuple[list[bytes], list[Cdr]] | None:
        entries = await self.redis.xrange(self.key, count=limit)
        if not entries:
            return None
        ids, cdrs = [], []
        for entry_id, fields in entries:
            ids.append(entry_id)
            try:
                cdrs.append(cdr_from_json(fields[b"cdr"]))
            except (KeyError, ValueError, TypeError) as exc:
                logs.event(log, "cdr_stream_entry_unreadable", logging.ERROR, id=entry_id,
                           error=repr(exc))  # fmt: skip
        return ids, cdrs

    async def remove(self, handle: list[bytes]) -> None:
        await self.redis.xdel(self.key, *handle)

    async def close(self) -> None:
        await self.redis.aclose()


class CdrWriter:
    """Batches CDRs into the database; spools them while it is down; rejected rows to error_queue."""

    def __init__(
        self,
        db: Database,
        *,
        redis_url: str | None,
        journal_dir: Path,
        batch_rows: int = 500,
        batch_ms: float = 200.0,
        retry_s: float = RETRY_SECONDS,
        stream: str = STREAM,
    ) -> None:
        self.db = db
        self.batch_rows = max(batch_rows, 1)
        self.batch_s = max(batch_ms, 0.0) / 1000.0
        self.retry_s = retry_s
        self.journal = Journal(journal_dir)
        self.stream: RedisStream | None = RedisStream(redis_url, stream) if redis_url else None
        self.link = Link("cdrs")  # the stream's Redis: logs when it goes away and comes back
        self.insert = _INSERT[db.dialect]
        self.pending: list[Cdr] = []
        self.down = False  # the last write found the database down
        self.written = 0  # rows the database took (replays included)
        self.spooled = 0  # rows that went to a spool
        self.rejected = 0  # rows that went to error_queue
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._backlog = True  # a spool may hold rows (at start: from before a restart)

    async def start(self) -> None:
        """Start writing; what the spools hold from before is written back first."""
        self._task = asyncio.create_task(self._run(), name="cdr-writer")

    def add(self, cdr: Cdr) -> None:
        """Queue ``cdr`` for the next batch; never blocks, never raises."""
        try:
            self.pending.append(cdr)
            if len(self.pending) >= self.batch_rows:
                self._wake.set()
        except Exception as exc:  # noqa: BLE001 - the call path must go on whatever happens here
            logs.event(log, "cdr_add_failed", logging.ERROR, error=repr(exc))

    async def close(self) -> None:
        """Write (or spool) everything queued, then stop."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            await self._task
        else:
            await self._flush()
        if self.stream is not None:
            await self.stream.close()

    @property
    def backlog(self) -> bool:
        """Whether rows may be waiting in a spool."""
        return self._backlog

    async def _run(self) -> None:
        next_replay = 0.0
        while not self._closing:
            busy = self.pending or (self._backlog and not self.down)
            try:
                await asyncio.wait_for(self._wake.wait(), self.batch_s if busy else self.retry_s)
            except TimeoutError:
                pass
            self._wake.clear()
            try:
                await self._flush()
                if self._backlog and time.monotonic() >= next_replay:
                    more = await self._replay()
                    next_replay = time.monotonic() + (0.0 if more else self.retry_s)
            except Exception as exc:  # noqa: BLE001 - the writer must outlive any surprise
                logs.event(log, "cdr_writer_error", logging.ERROR, error=repr(exc))
        try:
            await self._flush()
        except Exception as exc:  # noqa: BLE001
            logs.event(log, "cdr_writer_error", logging.ERROR, error=repr(exc))

    async def _flush(self) -> None:
        """Write what ``add`` queued, in batches; spool what the database cannot take now."""
        while self.pending:
            batch, self.pending = self.pending[: self.batch_rows], self.pending[self.batch_rows :]
            # While it is down, only the replay knocks (every retry_s): new rows go to the spool.
            unwritten = batch if self.down else await self._write(batch)
            if unwritten and not await self._spool(unwritten):
                self.pending[:0] = unwritten  # nowhere to put them: keep them, retry later
                return

    async def _write(self, batch: list[Cdr]) -> list[Cdr]:
        """Write ``batch``; the rows left unwritten because the database is down."""
        try:
            async with self.db.transaction() as tx:
                await tx.executemany(self.insert, [cdr_row(cdr) for cdr in batch])
        except StorageError as exc:
            if not await self._alive():
                self._went_down(exc)
                return batch
        else:
            self._came_back()
            self.written += len(batch)
            return []
        # The database is up but refused the batch: find the row(s) it refuses.
        for i, cdr in enumerate(batch):
            for attempt in (1, 2):  # a second try: the first may have met a stale connection
                try:
                    await self.db.execute(self.insert, cdr_row(cdr))
                    self.written += 1
                    break
                except StorageError as exc:
                    if not await self._alive():
                        self._went_down(exc)
                        return batch[i:]
                    if attempt == 2:
                        await self._reject(cdr, exc)
        self._came_back()
        return []

    async def _reject(self, cdr: Cdr, exc: StorageError) -> None:
        reason = str(exc)
        payload = cdr_json(cdr).decode()
        logs.event(log, "cdr_rejected", logging.WARNING, call_id=cdr.call_id, reason=reason)
        try:
            await queue_error(self.db, ERROR_SOURCE, reason, payload)
            self.rejected += 1
        except StorageError as error:
            # Not even error_queue takes it: keep it on disk for an operator.
            logs.event(log, "cdr_error_queue_failed", logging.ERROR, call_id=cdr.call_id,
                       error=str(error))  # fmt: skip
            self.journal.directory.mkdir(parents=True, exist_ok=True)
            with (self.journal.directory / "rejected.jsonl").open("ab") as handle:
                handle.write(orjson.dumps({"reason": reason, "cdr": orjson.loads(payload)}) + b"\n")

    async def _alive(self) -> bool:
        try:
            await self.db.fetchone("SELECT 1")
            return True
        except StorageError:
            return False

    def _went_down(self, exc: StorageError) -> None:
        if not self.down:
            self.down = True
            logs.event(log, "cdr_database_down", logging.WARNING, error=str(exc))

    def _came_back(self) -> None:
        if self.down:
            self.down = False
            logs.event(log, "cdr_database_back")

    async def _spool(self, cdrs: list[Cdr]) -> bool:
        """Put ``cdrs`` in the stream, else the journal; False when neither took them."""
        self._backlog = True
        if self.stream is not None:
            try:
                await self.stream.append(cdrs)
                self.link.succeeded()
                self.spooled += len(cdrs)
                return True
            except Exception as exc:  # noqa: BLE001 - Redis away: the journal is next
                self.link.failed(exc)
        try:
            await self.journal.append(cdrs)
        except OSError as exc:
            logs.event(log, "cdr_journal_failed", logging.ERROR, error=repr(exc))
            return False
        self.spooled += len(cdrs)
        return True

    async def _replay(self, max_batches: int = 20) -> bool:
        """Write back what the spools hold, oldest first; True when there is more to do now
        (it stopped after ``max_batches`` so new CDRs are not held up behind a long backlog)."""
        spools: list[Spool] = [self.journal] if self.stream is None else [self.stream, self.journal]
        complete = True
        for spool in spools:
            while True:
                if max_batches == 0:
                    return True
                try:
                    found = await spool.oldest(self.batch_rows)
                except Exception as exc:  # noqa: BLE001 - Redis away: the journal, then next round
                    self.link.failed(exc)
                    complete = False
                    break
                if spool is self.stream:
                    self.link.succeeded()
                if found is None:
                    break
                handle, cdrs = found
                if cdrs and await self._write(cdrs):
                    return False  # down again: it stays spooled
                await spool.remove(handle)
                logs.event(log, "cdrs_replayed", rows=len(cdrs))
                max_batches -= 1
        self._backlog = not complete
        return False
