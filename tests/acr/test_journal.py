"""The ACR's journal (acr.journal) on real files: an answer is on disk before its
``done`` runs, appends share an fsync, a restart finds the calls still up and the
CDRs not yet written, a torn or corrupt line is passed over, segments the writer
has left are compacted away, one process per directory, a refused write is kept."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from acr import journal as journal_module
from acr.journal import Journal, JournalError, decode
from sipline.carriers.model import Cdr

T0 = 1_700_000_000.0


def cdr(n: int, **changes: object) -> Cdr:
    values: dict[str, object] = dict(
        call_id=f"call-{n}", account="ACME", caller="alice", callee="442071234567",
        prefix="44", carrier="acme", gateway="127.0.0.1:5090", rate=0.6,
        start=T0 + n, end=T0 + n + 1, final_code=200, node="primary", answer=T0 + n + 1,
        first_increment=6, next_increment=6,
    )  # fmt: skip
    return Cdr(**(values | changes))  # type: ignore[arg-type]


def ended(n: int) -> Cdr:
    return cdr(n, end=T0 + n + 61, billed_seconds=60, cost=0.6)


def records(directory: Path) -> list[dict]:
    """Every record on disk, in order."""
    found = []
    for path in sorted(directory.glob("seg-*.log")):
        for line in path.read_bytes().splitlines():
            record = decode(line)
            if record is not None:
                found.append(record)
    return found


def kinds(directory: Path) -> list[tuple[str, str]]:
    return [(r["k"], r["cdr"]["call_id"]) for r in records(directory) if r["k"] != "k"]


async def kill(journal: Journal) -> None:
    """What SIGKILL does to it: nothing more is written, the files and the lock are let go."""
    journal._entries.clear()
    executor = journal._executor
    assert executor is not None
    await asyncio.get_running_loop().run_in_executor(executor, journal._release)
    executor.shutdown()
    journal._executor = None


async def opened(
    directory: Path, **options: object
) -> tuple[Journal, list[tuple[Cdr, str | None]]]:
    journal = Journal(directory, **options)  # type: ignore[arg-type]
    return journal, await journal.open()


async def test_an_answer_is_on_disk_before_its_done_runs(tmp_path: Path) -> None:
    journal, resumed = await opened(tmp_path)
    assert resumed == []
    seen: list[tuple[bool, list]] = []
    journal.answered(cdr(1), "media-1", lambda ok: seen.append((ok, kinds(tmp_path))))
    assert seen == []  # nothing is told before the write
    await journal.sync()
    assert seen == [(True, [("a", "call-1")])]
    await journal.close()


async def test_appends_made_together_share_one_fsync(tmp_path: Path) -> None:
    journal, _ = await opened(tmp_path, commit_ms=5)
    await journal.sync()
    before = journal.commits
    done: list[bool] = []
    for n in range(200):
        journal.answered(cdr(n), None, done.append)
    await journal.sync()
    assert done == [True] * 200
    assert journal.commits == before + 1
    await journal.close()


async def test_a_restart_finds_the_calls_still_up_and_the_cdrs_not_written(
    tmp_path: Path,
) -> None:
    journal, _ = await opened(tmp_path)
    for n in range(4):
        journal.answered(cdr(n), f"media-{n}", lambda ok: None)
    journal.ended(ended(0))
    journal.add(cdr(9, answer=None, final_code=503))
    await journal.sync()
    cdrs, cursor, count = await journal.read(10)
    assert [c.call_id for c in cdrs] == ["call-0", "call-9"] and count == 2
    journal.consumed(cursor, count)  # in the database: checkpointed
    journal.ended(ended(1))  # ... and one more, not yet written
    await journal.sync()
    assert journal.unread == 1
    await kill(journal)

    restarted, resumed = await opened(tmp_path)
    assert [(c.call_id, c.answer, media) for c, media in resumed] == [
        ("call-2", T0 + 3, "media-2"),
        ("call-3", T0 + 4, "media-3"),
    ]
    assert restarted.unread == 1
    cdrs, cursor, count = await restarted.read(10)
    assert cdrs == [ended(1)]
    await restarted.close()


async def test_a_line_torn_by_a_crash_is_passed_over(tmp_path: Path) -> None:
    journal, _ = await opened(tmp_path)
    journal.answered(cdr(1), None, lambda ok: None)
    journal.answered(cdr(2), None, lambda ok: None)
    await journal.sync()
    await journal.close()
    [path] = sorted(tmp_path.glob("seg-*.log"))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 40])  # the crash came in the middle of call-2's line

    restarted, resumed = await opened(tmp_path)
    assert [c.call_id for c, _ in resumed] == ["call-1"]
    assert restarted.corrupt == 0  # a torn tail is expected, not corruption
    restarted.answered(cdr(3), None, lambda ok: None)
    await restarted.sync()
    await restarted.close()
    # The new record went to a segment of its own, not after the torn line.
    assert path.read_bytes() == data[: len(data) - 40]
    _, again = await opened(tmp_path)
    assert [c.call_id for c, _ in again] == ["call-1", "call-3"]


async def test_a_corrupt_line_is_counted_and_the_rest_is_read(tmp_path: Path) -> None:
    journal, _ = await opened(tmp_path)
    for n in range(3):
        journal.ended(ended(n))
    await journal.sync()
    await journal.close()
    [path] = sorted(tmp_path.glob("seg-*.log"))
    lines = path.read_bytes().split(b"\n")
    second = next(i for i, line in enumerate(lines) if b"call-1" in line)
    lines[second] = lines[second].replace(b"alice", b"mallory")  # CRC no longer matches
    path.write_bytes(b"\n".join(lines))

    restarted, _ = await opened(tmp_path)
    assert restarted.corrupt == 1
    cdrs, _, _ = await restarted.read(10)
    assert [c.call_id for c in cdrs] == ["call-0", "call-2"]
    await restarted.close()


async def test_segments_the_writer_has_left_are_compacted_away(tmp_path: Path) -> None:
    journal, _ = await opened(tmp_path, segment_bytes=4096)
    for n in range(60):  # about ten segments of answers; every other call ends
        journal.answered(cdr(n), None, lambda ok: None)
        await journal.sync()
        if n % 2:
            journal.ended(ended(n))
    await journal.sync()
    assert len(list(tmp_path.glob("seg-*.log"))) >= 8
    while journal.unread:  # the writer takes every CDR
        _, cursor, count = await journal.read(7)
        journal.consumed(cursor, count)
    journal.answered(cdr(99), None, lambda ok: None)  # the next write compacts
    await journal.sync()
    assert len(list(tmp_path.glob("seg-*.log"))) <= 2
    await kill(journal)

    restarted, resumed = await opened(tmp_path)
    assert [c.call_id for c, _ in resumed] == [f"call-{n}" for n in range(0, 60, 2)] + ["call-99"]
    assert restarted.unread == 0
    await restarted.close()


async def test_one_process_per_journal(tmp_path: Path) -> None:
    journal, _ = await opened(tmp_path)
    with pytest.raises(JournalError, match="in use by another process"):
        await opened(tmp_path)
    await journal.close()
    other, _ = await opened(tmp_path)  # free again once closed
    await other.close()


async def test_a_write_the_disk_refuses_is_told_at_once_and_kept_for_another_try(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    journal, _ = await opened(tmp_path)
    await journal.sync()
    real = journal_module.os.fdatasync
    refusals = [OSError(28, "No space left on device")]

    def fdatasync(fd: int) -> None:
        if refusals:
            raise refusals.pop()
        real(fd)

    monkeypatch.setattr(journal_module.os, "fdatasync", fdatasync)
    monkeypatch.setattr(journal_module, "RETRY_SECONDS", 0.05)
    told: list[bool] = []
    journal.answered(cdr(1), None, told.append)
    while not told:
        await asyncio.sleep(0.01)
    assert told == [False] and journal.failures == 1  # the call goes on
    await journal.sync()
    assert kinds(tmp_path) == [("a", "call-1")]  # written on the next try, once
    await journal.close()


async def test_a_journal_not_open_tells_at_once_that_nothing_was_written(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    told: list[bool] = []
    journal.answered(cdr(1), None, told.append)
    assert told == [False] and journal.lost == 1
