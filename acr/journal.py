"""The ACR's journal: its billing on local disk, fsynced, the spool of record of its CDRs.

What the ACR must not lose is appended here before anyone hears of it (issue 12):

- ``answered(cdr, media_call, done)``: a call to a carrier was answered;
  ``cdr`` is its CDR as far as it is known (the end is still the answer).
  The router sends the 200 upstream from ``done``, once the record is on
  disk, so a node killed at any instant after the caller heard the answer
  finds the call again when it starts (``open``), and its BYE, or the sweep,
  writes the CDR.
- ``ended(cdr, done)``: that call's CDR, which closes its answered record;
  the router relays the BYE from ``done``.
- ``add(cdr)``: any other CDR (a failed call, a late answer).

Records go to the active segment ``seg-<n>.log``, one line each: the CRC-32
of the JSON in 8 hex digits, a space, the JSON. A line torn by a crash fails
its CRC and is ignored. Group commit: an append waits ``commit_ms`` for
others, then one write and one fdatasync in the journal's own thread carry
them all (and every append made while that fsync runs rides the next one);
their ``done`` callbacks then run on the event loop, in order. A record
nobody waits for (a CDR of a failed call, a checkpoint) waits up to
``LAZY_SECONDS`` to ride along with one somebody does.

The CDR writer (``acr.cdrs``) reads the CDRs in order (``read``), writes them
to the database and moves its cursor, a (segment, offset) that is journalled
as a checkpoint record (``consumed``). Segments roll over at
``segment_bytes``; a sealed segment the cursor has left is removed, once the
answered records in it of calls still up are copied into the active segment
(in the same write, before the removal). ``open`` reads every segment: the
answered calls not ended are handed back, and the writer starts again at the
last checkpoint (a CDR past it written twice is skipped by the table's
unique key).

A write the disk refuses is kept and tried again (bounded by
``RETAINED_BYTES``); its ``done`` callbacks are told at once (False), so the
call goes on. One process per directory: ``open`` takes a lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import zlib
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import orjson

from sipline.carriers.model import Cdr
from sipline.logs import event
from sipline.storage.database import StorageError

log = logging.getLogger("sipline.acr.journal")

SEGMENT_BYTES = 4 << 20  # a segment rolls over past this size
READ_BYTES = 1 << 20  # the most the writer reads at once
RETAINED_BYTES = 64 << 20  # records kept for another try while the disk refuses them
RETRY_SECONDS = 1.0  # between tries of a write the disk refused
LAZY_SECONDS = 0.05  # the longest a record nobody waits for stays off disk
LOCK = "lock"

Done = Callable[[bool], None]  # True: on disk; False: the disk refused it
Cursor = tuple[int, int]  # (segment number, offset): how far the CDR writer has got
CDR_KINDS = frozenset(("e", "c"))


class JournalError(StorageError):
    """The journal cannot be opened (locked by another process, or unreadable): the
    node does not start (a message, exit status 1)."""


def cdr_json(cdr: Cdr) -> bytes:
    return orjson.dumps(cdr)


def cdr_from_json(data: bytes | str) -> Cdr:
    return Cdr(**orjson.loads(data))


def encode(record: dict[str, Any]) -> bytes:
    payload = orjson.dumps(record)
    return b"%08x %s\n" % (zlib.crc32(payload), payload)


def decode(line: bytes) -> dict[str, Any] | None:
    """The record of one line (its newline taken off); None when torn or corrupt."""
    if len(line) < 10 or line[8:9] != b" ":
        return None
    payload = line[9:]
    try:
        if int(line[:8], 16) != zlib.crc32(payload):
            return None
        record = orjson.loads(payload)
    except ValueError:
        return None
    return record if isinstance(record, dict) else None


def segment_path(directory: Path, number: int) -> Path:
    return directory / f"seg-{number:012d}.log"


@dataclass(slots=True, eq=False)
class Segment:
    number: int
    path: Path
    size: int = 0  # bytes appended, on disk or on their way
    durable: int = 0  # bytes on disk: what the writer may read
    open: int = 0  # answered calls whose record is here and who are still up
    fd: int | None = None  # the journal thread's


@dataclass(slots=True)
class Entry:
    kind: str  # a (answered), e (ended), c (CDR), k (checkpoint)
    key: str  # the call's Call-ID for a and e
    line: bytes
    done: Done | None = None


@dataclass(slots=True)
class Job:
    """One group commit, for the journal thread."""

    segment: Segment
    data: bytes
    start: int  # the segment's size before it
    doomed: list[Segment] = field(default_factory=list)  # removed once ``data`` is on disk
    close: list[Segment] = field(default_factory=list)  # sealed: their fds are closed


@dataclass(slots=True)
class Scan:
    """What ``open`` found on disk."""

    segments: list[Segment]
    calls: dict[str, tuple[int, bytes, dict[str, Any]]]  # open calls: segment, line, record
    cursor: Cursor | None
    cdrs: list[tuple[int, int]]  # where every CDR record starts
    corrupt: int


class Journal:
    """The ACR node's journal in ``directory`` (see the module's doc)."""

    def __init__(
        self, directory: Path, *, commit_ms: float = 1.0, segment_bytes: int = SEGMENT_BYTES
    ) -> None:
        self.directory = directory
        self.commit_s = max(commit_ms, 0.0) / 1000.0
        self.segment_bytes = max(segment_bytes, 1)
        self.segments: list[Segment] = []  # oldest first; the last is the active one
        self.cursor: Cursor = (0, 0)
        self.unread = 0  # CDRs on disk past the cursor
        self.calls: dict[str, tuple[Segment, bytes]] = {}  # answered, still up: segment, line
        self.listener: Callable[[int], None] | None = None  # told ``unread`` as CDRs reach disk
        self.commits = 0  # group commits (fdatasyncs)
        self.records = 0  # records on disk
        self.failures = 0  # writes the disk refused
        self.lost = 0  # records dropped after RETAINED_BYTES of refused writes
        self.corrupt = 0  # lines that failed their CRC (the torn tail of a crash apart)
        self._entries: list[Entry] = []
        self._executor: ThreadPoolExecutor | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._busy = False  # a group commit is in the thread
        self._failing = False
        self._idle: asyncio.Future[None] | None = None
        self._dir_fd: int | None = None
        self._lock_fd: int | None = None

    # -- start and stop --------------------------------------------------------------------
    async def open(self) -> list[tuple[Cdr, str | None]]:
        """Read what the segments hold and start a new active segment; the calls
        answered and not ended (CDR so far, media Call-ID), oldest answer first.
        JournalError when another process holds the directory."""
        self._loop = asyncio.get_running_loop()
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="acr-journal")
        try:
            scan = await self._loop.run_in_executor(self._executor, self._scan)
        except BaseException:
            await self._loop.run_in_executor(self._executor, self._release)
            self._executor.shutdown()
            self._executor = None
            raise
        self.corrupt += scan.corrupt
        self.segments = scan.segments
        by_number = {s.number: s for s in self.segments}
        active = Segment(max(by_number, default=0) + 1, Path())
        active.path = segment_path(self.directory, active.number)
        cursor = scan.cursor
        if cursor is None or cursor[0] not in by_number:  # none yet, or its segment is gone
            later = sorted(n for n in by_number if cursor is None or n > cursor[0])
            cursor = (later[0], 0) if later else (active.number, 0)
        self.segments.append(active)
        self.cursor = cursor
        self.unread = sum(1 for position in scan.cdrs if position >= cursor)
        resumed = []
        for call_id, (number, line, record) in scan.calls.items():
            segment = by_number[number]
            segment.open += 1
            self.calls[call_id] = (segment, line)
            try:
                resumed.append((Cdr(**record["cdr"]), record.get("media")))
            except (KeyError, TypeError):
                self.corrupt += 1
        await self._loop.run_in_executor(self._executor, self._create, active)
        self._append(Entry("k", "", self._checkpoint()))
        event(
            log, "journal_opened", directory=self.directory, segments=len(self.segments),
            calls=len(resumed), unwritten=self.unread, corrupt=scan.corrupt,
        )  # fmt: skip
        resumed.sort(key=lambda r: r[0].answer or 0.0)
        return resumed

    async def sync(self) -> None:
        """Wait until what is appended is on disk (one more try if the disk refused it)."""
        if self._executor is None or self._loop is None:
            return
        for _ in range(2):  # a refused write gets one more try
            if not (self._busy or self._entries):
                break
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            self._idle = self._loop.create_future()
            if not self._busy:
                self._flush()
            await self._idle

    async def close(self) -> None:
        """Put what is appended on disk, then let go of the files and the lock."""
        await self.sync()
        if self._executor is None or self._loop is None:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._entries:
            self._lose(self._entries, "closed")
            self._entries = []
        await self._loop.run_in_executor(self._executor, self._release)
        self._executor.shutdown(wait=True)
        self._executor = None

    # -- appending (the call path: no I/O, no waiting) ------------------------------------
    def answered(self, cdr: Cdr, media_call: str | None, done: Done) -> None:
        line = encode({"k": "a", "cdr": cdr, "media": media_call})
        self._append(Entry("a", cdr.call_id, line, done))

    def ended(self, cdr: Cdr, done: Done | None = None) -> None:
        self._append(Entry("e", cdr.call_id, encode({"k": "e", "cdr": cdr}), done))

    def add(self, cdr: Cdr, done: Done | None = None) -> None:
        self._append(Entry("c", "", encode({"k": "c", "cdr": cdr}), done))

    def _append(self, entry: Entry) -> None:
        if self._executor is None:  # not open (or closed): never leave a caller waiting
            self._lose([entry], "journal not open")
            if entry.done is not None:
                entry.done(False)
            return
        self._entries.append(entry)
        if not self._busy:  # else the write in progress takes it on when it is over
            self._schedule(entry.done is not None)

    def _schedule(self, urgent: bool) -> None:
        """The next group commit: within ``commit_s`` when someone waits for a record
        (``urgent``: it has a ``done``), else within LAZY_SECONDS (a CDR nobody waits
        for, a checkpoint: they ride along with the next answer, not an fsync of their own)."""
        loop = self._loop
        if loop is None:
            return
        if self._failing:
            delay = RETRY_SECONDS
        else:
            delay = self.commit_s if urgent else LAZY_SECONDS
        timer = self._timer
        if timer is not None:
            if timer.when() <= loop.time() + delay:
                return
            timer.cancel()
        self._timer = loop.call_later(delay, self._flush)

    # -- the CDR writer's side -------------------------------------------------------------
    async def read(self, limit: int) -> tuple[list[Cdr], Cursor, int]:
        """Up to ``limit`` CDRs on disk past the cursor, the cursor after them, and
        how many CDR records that passed (those that no longer parse too)."""
        plan = [(s.path, s.number, s.durable) for s in self.segments if s.number >= self.cursor[0]]
        cdrs, cursor, count, corrupt = await asyncio.to_thread(read_cdrs, plan, self.cursor, limit)
        self.corrupt += corrupt
        return cdrs, cursor, count

    def consumed(self, cursor: Cursor, count: int) -> None:
        """The writer has put the ``count`` CDRs before ``cursor`` in the database."""
        self.unread = max(0, self.unread - count)
        active = self.segments[-1]
        if cursor == (active.number, active.durable):
            self.unread = 0  # nothing on disk past it
        if cursor > self.cursor:
            self.cursor = cursor
            if count:
                self._append(Entry("k", "", self._checkpoint()))

    def _checkpoint(self) -> bytes:
        return encode({"k": "k", "seg": self.cursor[0], "off": self.cursor[1]})

    # -- group commit ----------------------------------------------------------------------
    def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._busy or not self._entries or self._executor is None or self._loop is None:
            return
        entries, self._entries = self._entries, []
        active = self.segments[-1]
        job = Job(active, b"", active.size)
        if active.size >= self.segment_bytes:
            active = Segment(active.number + 1, segment_path(self.directory, active.number + 1))
            job.close.append(self.segments[-1])
            self.segments.append(active)
            job.segment, job.start = active, 0
            entries.insert(0, Entry("k", "", self._checkpoint()))
        for entry in entries:
            if entry.kind == "a":
                self._open_call(entry.key, active, entry.line)
            elif entry.kind == "e":
                self._close_call(entry.key)
        entries += self._compact(active, job)
        job.data = b"".join(entry.line for entry in entries)
        active.size += len(job.data)
        self._busy = True
        # The thread's future told straight back to the loop (no asyncio future
        # chained to it: this runs once per group commit).
        done = partial(self._loop.call_soon_threadsafe, self._written, job, entries)
        self._executor.submit(self._write, job).add_done_callback(done)

    def _open_call(self, call_id: str, segment: Segment, line: bytes) -> None:
        self._close_call(call_id)  # a copy moves it
        self.calls[call_id] = (segment, line)
        segment.open += 1

    def _close_call(self, call_id: str) -> None:
        held = self.calls.pop(call_id, None)
        if held is not None:
            held[0].open -= 1

    def _compact(self, active: Segment, job: Job) -> list[Entry]:
        """Sealed segments the cursor has left: removed once this write is on disk,
        and the answered records of their calls still up copied into it first."""
        doomed = [s for s in self.segments[:-1] if s.number < self.cursor[0]]
        if not doomed:
            return []
        copies = [
            Entry("a", call_id, line)
            for call_id, (segment, line) in self.calls.items()
            if segment in doomed
        ]
        for copy in copies:
            self._open_call(copy.key, active, copy.line)
        job.doomed = doomed
        job.close += doomed
        return copies

    def _written(self, job: Job, entries: list[Entry], future: Future[None]) -> None:
        self._busy = False
        error = future.exception()
        if error is None:
            job.segment.durable = job.start + len(job.data)
            if job.doomed:
                self.segments = [s for s in self.segments if s not in job.doomed]
            self.commits += 1
            self.records += len(entries)
            cdrs = sum(1 for entry in entries if entry.kind in CDR_KINDS)
            self.unread += cdrs
            if self._failing:
                self._failing = False
                event(log, "journal_writing_again", failures=self.failures)
        else:
            self._refused(job, entries, error)
            cdrs = 0
        for entry in entries:
            if entry.done is not None:
                done, entry.done = entry.done, None
                try:
                    done(error is None)
                except Exception:
                    log.exception("event=journal_callback_error")
        if cdrs and self.listener is not None:
            self.listener(self.unread)
        if self._entries:
            urgent = any(entry.done is not None for entry in self._entries)
            if urgent and not self._failing:
                self._flush()  # they waited for this write already
            else:
                self._schedule(urgent)
        idle = self._idle
        if idle is not None and not idle.done() and not self._busy:
            idle.set_result(None)

    def _refused(self, job: Job, entries: list[Entry], error: BaseException) -> None:
        """The disk refused a write: keep its records for another try, bounded."""
        self.failures += 1
        if not self._failing:
            self._failing = True
            event(log, "journal_write_failed", logging.ERROR, segment=job.segment.path,
                  error=repr(error))  # fmt: skip
        segment = job.segment
        segment.size = job.start  # the thread cut off what it wrote of it
        if isinstance(error, TruncateFailed):  # a torn line in the way: go on in a new segment
            segment.size = max(segment.size, self.segment_bytes)
        kept = [e for e in entries if e.kind != "k"] + self._entries
        size = 0
        for i in range(len(kept) - 1, -1, -1):
            size += len(kept[i].line)
            if size > RETAINED_BYTES:
                self._lose(kept[: i + 1], "disk refused")
                kept = kept[i + 1 :]
                break
        self._entries = kept

    def _lose(self, entries: list[Entry], why: str) -> None:
        self.lost += len(entries)
        event(log, "journal_records_lost", logging.ERROR, records=len(entries), why=why)

    # -- in the journal's thread -----------------------------------------------------------
    def _scan(self) -> Scan:
        where = f"the journal {self.directory}"
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            lock = os.open(self.directory / LOCK, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise JournalError(f"{where} cannot be opened: {exc}") from None
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(lock)
            raise JournalError(f"{where} is in use by another process") from None
        self._lock_fd = lock
        try:
            self._dir_fd = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY)
            return scan_segments(self.directory)
        except OSError as exc:
            raise JournalError(f"{where} cannot be read: {exc}") from None

    def _create(self, segment: Segment) -> None:
        segment.fd = os.open(segment.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
        assert self._dir_fd is not None
        os.fsync(self._dir_fd)

    def _write(self, job: Job) -> None:
        segment = job.segment
        for sealed in job.close:
            if sealed.fd is not None:
                os.close(sealed.fd)
                sealed.fd = None
        if segment.fd is None:  # a new segment (or one whose creation failed before)
            self._create(segment)
        try:
            view = memoryview(job.data)
            while view:
                view = view[os.write(segment.fd, view) :]
            os.fdatasync(segment.fd)
        except OSError as exc:
            try:
                os.ftruncate(segment.fd, job.start)
            except OSError:
                raise TruncateFailed(str(exc)) from exc
            raise
        for doomed in job.doomed:
            doomed.path.unlink(missing_ok=True)
        if job.doomed:
            assert self._dir_fd is not None
            os.fsync(self._dir_fd)

    def _release(self) -> None:
        for segment in self.segments:
            if segment.fd is not None:
                os.close(segment.fd)
                segment.fd = None
        for fd in (self._dir_fd, self._lock_fd):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)  # closing the lock's file lets go of the lock
        self._dir_fd = self._lock_fd = None


class TruncateFailed(OSError):
    """A refused write could not be cut off: the segment may end in a torn line."""


def scan_segments(directory: Path) -> Scan:
    """Every segment in ``directory``, read through: open calls, last checkpoint, CDRs."""
    numbered = []
    for path in directory.glob("seg-*.log"):
        try:
            numbered.append((int(path.stem[4:]), path))
        except ValueError:
            continue
    segments: list[Segment] = []
    calls: dict[str, tuple[int, bytes, dict[str, Any]]] = {}
    cursor: Cursor | None = None
    cdrs: list[tuple[int, int]] = []
    corrupt = 0
    for number, path in sorted(numbered):
        data = path.read_bytes()
        offset = 0
        while offset < len(data):
            end = data.find(b"\n", offset)
            if end < 0:  # a torn tail: the crash came in the middle of a write
                event(log, "journal_torn_tail", file=path.name, bytes=len(data) - offset)
                break
            line = data[offset:end]
            record = decode(line)
            if record is None:
                corrupt += 1
                event(log, "journal_line_unreadable", logging.ERROR, file=path.name, offset=offset)
            else:
                try:
                    kind = record["k"]
                    if kind == "a":
                        calls[str(record["cdr"]["call_id"])] = (number, line + b"\n", record)
                    elif kind in CDR_KINDS:
                        cdrs.append((number, offset))
                        if kind == "e":
                            calls.pop(str(record["cdr"]["call_id"]), None)
                    elif kind == "k":
                        cursor = (int(record["seg"]), int(record["off"]))
                except (KeyError, TypeError, ValueError):
                    corrupt += 1
            offset = end + 1
        segments.append(Segment(number, path, offset, offset))
    return Scan(segments, calls, cursor, cdrs, corrupt)


def read_cdrs(
    plan: list[tuple[Path, int, int]], cursor: Cursor, limit: int
) -> tuple[list[Cdr], Cursor, int, int]:
    """Up to ``limit`` CDRs from ``cursor`` on, through the segments of ``plan``
    (path, number, bytes on disk): the CDRs, the cursor after them, the CDR
    records passed (unreadable ones too) and the corrupt lines met."""
    number, offset = cursor
    cdrs: list[Cdr] = []
    count = corrupt = 0
    for path, n, durable in plan:
        if n < number:
            continue
        if n > number:
            number, offset = n, 0
        if offset >= durable:
            continue
        with path.open("rb") as handle:
            while offset < durable and count < limit:
                handle.seek(offset)
                chunk = handle.read(min(durable - offset, READ_BYTES))
                if b"\n" not in chunk:
                    chunk += handle.read(durable - offset - len(chunk))  # one very long line
                if b"\n" not in chunk:
                    break  # never: what is on disk ends with a whole line
                for line in chunk[: chunk.rfind(b"\n")].split(b"\n"):
                    offset += len(line) + 1
                    record = decode(line)
                    if record is None:
                        corrupt += 1
                    elif record.get("k") in CDR_KINDS:
                        count += 1
                        try:
                            cdrs.append(Cdr(**record["cdr"]))
                        except (KeyError, TypeError):
                            corrupt += 1
                    if count >= limit:
                        break
                if count >= limit:
                    break
        if count >= limit or offset < durable:
            break
    return cdrs, (number, offset), count, corrupt
