"""CDRs from the journal into the database, in batches.

The journal (``acr.journal``) is the spool of record: the router appends every
CDR there, and this writer reads them back in order and writes them in
batches, one INSERT statement per batch: ``batch_rows`` rows, or what reached
the disk within ``batch_ms`` of the first of them. Then it moves the journal's
cursor past them (a checkpoint). While the database is down it tries again
every ``retry_s``: the CDRs wait on disk meanwhile, however long, and through
a restart (``Journal.open`` puts the cursor back at the last checkpoint). A
row the database refuses while it is up (too long a value, a NULL where none
may be) goes to ``error_queue`` with the reason (to ``rejected.jsonl`` beside
the journal when even that fails), and the rest of its batch is written.

A batch written again (the process stopped between the commit and the
checkpoint) is skipped by the table's unique key (call_id, node, started_at).
"""

from __future__ import annotations

import asyncio
import logging

import orjson

from acr.journal import Journal, cdr_json
from sipline import logs
from sipline.carriers.model import Cdr
from sipline.carriers.store import CDR_COLUMNS, cdr_row
from sipline.storage.database import Database, StorageError
from sipline.storage.error_queue import queue_error

log = logging.getLogger("sipline.acr.cdrs")

ERROR_SOURCE = "cdrs"
RETRY_SECONDS = 1.0
_VALUES = ", ".join("?" * len(CDR_COLUMNS.split(",")))
_INSERT = {
    "sqlite": f"INSERT INTO cdrs ({CDR_COLUMNS}) VALUES ({_VALUES}) ON CONFLICT DO NOTHING",
    "mysql": f"INSERT INTO cdrs ({CDR_COLUMNS}) VALUES ({_VALUES}) ON DUPLICATE KEY UPDATE id = id",
}


class CdrWriter:
    """Moves the journal's CDRs into the database; rejected rows to error_queue."""

    def __init__(
        self,
        db: Database,
        journal: Journal,
        *,
        batch_rows: int = 500,
        batch_ms: float = 200.0,
        retry_s: float = RETRY_SECONDS,
    ) -> None:
        self.db = db
        self.journal = journal
        self.batch_rows = max(batch_rows, 1)
        self.batch_s = max(batch_ms, 0.0) / 1000.0
        self.retry_s = retry_s
        self.insert = _INSERT[db.dialect]
        self.down = False  # the last write found the database down
        self.written = 0  # rows the database took (written again after a restart included)
        self.rejected = 0  # rows that went to error_queue
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._wakeup: asyncio.Future[None] | None = None
        self._wanted = 1  # unread CDRs that wake the writer while it sleeps
        journal.listener = self._readable

    async def start(self) -> None:
        """Start writing; what the journal holds from before the start is written first."""
        self._task = asyncio.create_task(self._run(), name="cdr-writer")

    async def close(self) -> None:
        """Write what the journal holds (one try while the database is down: the rest
        waits on disk for the next start), then stop."""
        await self.journal.sync()
        self._closing = True
        self._wake()
        if self._task is not None:
            await self._task
            self._task = None

    @property
    def backlog(self) -> bool:
        """Whether CDRs on disk wait for the database."""
        return self.journal.unread > 0

    async def _run(self) -> None:
        journal = self.journal
        while True:
            if not journal.unread:
                if self._closing:
                    return
                await self._sleep(None, wanted=1)
                # The first CDR after a pause: give the batch batch_ms to fill. (CDRs that
                # came while a batch was being written go at once: they have waited.)
                if journal.unread < self.batch_rows:
                    await self._sleep(self.batch_s, wanted=self.batch_rows)
                continue
            try:
                moved = await self._move()
            except Exception as exc:  # noqa: BLE001 - the writer must outlive any surprise
                logs.event(log, "cdr_writer_error", logging.ERROR, error=repr(exc))
                moved = False
            if not moved:
                if self._closing:
                    return
                await self._sleep(self.retry_s, wanted=0)

    async def _move(self) -> bool:
        """One batch from the journal into the database; False when the database is down."""
        cdrs, cursor, count = await self.journal.read(self.batch_rows)
        if cdrs and await self._write(cdrs):
            return False  # down: the cursor stays, the CDRs wait on disk
        self.journal.consumed(cursor, count)
        return True

    def _readable(self, unread: int) -> None:
        if self._wanted and unread >= self._wanted:
            self._wake()

    def _wake(self) -> None:
        if self._wakeup is not None and not self._wakeup.done():
            self._wakeup.set_result(None)

    async def _sleep(self, timeout: float | None, *, wanted: int) -> None:
        """Sleep ``timeout`` seconds (None: until woken), or until ``wanted`` CDRs are on
        disk (0: whatever comes), or until ``close``."""
        if self._closing:
            return
        self._wakeup = asyncio.get_running_loop().create_future()
        self._wanted = wanted
        try:
            await asyncio.wait_for(asyncio.shield(self._wakeup), timeout)
        except TimeoutError:
            pass
        finally:
            self._wakeup = None
            self._wanted = 0

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
