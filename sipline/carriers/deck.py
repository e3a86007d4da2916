"""Rate deck import: ``sipline rates import FILE.csv --carrier NAME``.

A deck is CSV with the columns ``prefix,rate`` and optionally
``connect_fee,first_increment,next_increment,effective_from,effective_to``,
in that order, or in any order under a header line naming them. Dates are
epoch seconds or ISO 8601 (``2025-01-01``, ``2025-01-01T00:00:00+01:00``;
UTC when no offset is given); an empty cell takes the default.

Every row is checked before anything is written; a deck with a bad row loads
nothing and the errors name their line numbers. A good deck replaces the
carrier's previous one in a single transaction, so routing sees either the
old deck or the new one, never half of either.
"""

from __future__ import annotations

import csv
import io
import math
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from operator import itemgetter
from pathlib import Path
from typing import Any

from sipline.carriers.store import (
    MAX_PREFIX,
    RATE_COLUMNS,
    UnknownCarrier,
    bump_version,
    check_name,
)
from sipline.storage.database import Database, InvalidValue, Queries, StorageError

COLUMNS = (
    "prefix",
    "rate",
    "connect_fee",
    "first_increment",
    "next_increment",
    "effective_from",
    "effective_to",
)
DEFAULTS = (None, None, 0.0, 60, 60, None, None)
CHUNK_ROWS = 50_000  # rows per executemany or loaded file: amortised, and progress still moves
MAX_REPORTED = 20
_INSERT = f"INSERT INTO rates ({RATE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
_LOAD = f"LOAD DATA LOCAL INFILE ? INTO TABLE rates ({RATE_COLUMNS})"

# A deck row as written: carrier, prefix, rate, fee, first, next, from, to.
DeckRow = tuple[str, str, float, float, int, int, float | None, float | None]
Progress = Callable[[int], None]  # called with the number of rows just done


class DeckError(InvalidValue):
    """The deck has bad rows; ``errors`` holds (line number, reason) for the first of them."""

    def __init__(self, path: str, errors: list[tuple[int, str]], total: int) -> None:
        self.errors = errors
        self.total = total
        lines = "\n".join(f"  line {line}: {reason}" for line, reason in errors)
        more = f"\n  ... and {total - len(errors)} more" if total > len(errors) else ""
        super().__init__(f"{path}: {total} bad row(s), nothing loaded:\n{lines}{more}")


@dataclass(slots=True)
class Deck:
    """The checked rows of a deck, ready to write."""

    carrier: str
    rows: list[DeckRow] = field(default_factory=list)


def parse_deck(
    lines: Iterable[str], carrier: str, *, path: str = "deck", progress: Progress | None = None
) -> Deck:
    """Check every row of ``lines`` (CSV text); DeckError naming the bad lines if any is wrong."""
    check_name(carrier)
    reader = csv.reader(lines)
    deck = Deck(carrier)
    errors: list[tuple[int, str]] = []
    total_errors = 0
    seen: set[tuple[str, float | None]] = set()
    parser: _RowParser | None = None
    done = 0
    try:
        for cells in reader:
            done += 1
            if progress is not None and done % 10_000 == 0:
                progress(10_000)
            if not cells or (len(cells) == 1 and not cells[0].strip()):
                continue
            if parser is None:
                try:
                    order = _header(cells)
                except ValueError as exc:
                    raise DeckError(path, [(reader.line_num, str(exc))], 1) from None
                parser = _RowParser(carrier, order)
                if order is not None:
                    continue
            try:
                row = parser.row(cells)
                key = (row[1], row[6])
                if key in seen:
                    raise ValueError(f"prefix {row[1]} is listed twice for the same effective_from")
                seen.add(key)
                deck.rows.append(row)
            except ValueError as exc:
                total_errors += 1
                if len(errors) < MAX_REPORTED:
                    errors.append((reader.line_num, str(exc)))
    except (csv.Error, UnicodeDecodeError) as exc:  # a NUL byte, not UTF-8 ...
        errors.append((reader.line_num + 1, f"unreadable: {exc}"))
        raise DeckError(path, errors, total_errors + 1) from None
    if progress is not None:
        progress(done % 10_000)
    if total_errors:
        raise DeckError(path, errors, total_errors)
    if not deck.rows:
        raise DeckError(path, [(0, "the deck has no rows")], 1)
    return deck


def _header(cells: list[str]) -> tuple[int, ...] | None:
    """The cell index of each of COLUMNS (-1: absent) named by a header line; None for data."""
    names = [cell.strip().lower() for cell in cells]
    first = names[0].removeprefix("+")
    if first.isascii() and first.isdigit():
        return None
    unknown = [name for name in names if name not in COLUMNS]
    if unknown or len(set(names)) != len(names) or not {"prefix", "rate"} <= set(names):
        raise ValueError(
            f"bad header {','.join(cells)!r}: expected columns from {','.join(COLUMNS)}"
            " including prefix and rate, each once"
        )
    return tuple(names.index(name) if name in names else -1 for name in COLUMNS)


class _RowParser:
    """Checks rows of one deck. Written for speed (a million rows in seconds): no per-cell
    calls on the common path, and the few distinct increments and dates parsed once each."""

    def __init__(self, carrier: str, order: tuple[int, ...] | None) -> None:
        self.carrier = carrier
        self.width = len(COLUMNS) if order is None else sum(i >= 0 for i in order)
        self.pad = len(COLUMNS)
        self.pick: Callable[[list[str]], tuple[str, ...]] | None = None
        if order is not None and order != tuple(range(self.width)) + (-1,) * (
            len(COLUMNS) - self.width
        ):
            # Not the canonical order: pick the cells by position, absent ones from one
            # blank cell padded after the last.
            self.pick = itemgetter(*(i if i >= 0 else self.width for i in order))
            self.pad = self.width + 1
        self.firsts: dict[str, int] = {"": 60}
        self.nexts: dict[str, int] = {"": 60}
        self.dates: dict[str, float | None] = {"": None}

    def row(self, cells: list[str]) -> DeckRow:
        n = len(cells)
        if n != self.pad:
            if n > self.width and any(c.strip() for c in cells[self.width :]):
                raise ValueError(f"{n} columns, expected at most {self.width}")
            cells = cells[: self.width] + [""] * (self.pad - min(n, self.width))
        text, rate_text, fee_text, first_text, next_text, from_text, to_text = (
            cells if self.pick is None else self.pick(cells)
        )
        prefix = text.strip()
        if prefix[:1] == "+":
            prefix = prefix[1:]
        if not (prefix.isdigit() and prefix.isascii() and len(prefix) <= MAX_PREFIX):
            raise ValueError(f"bad prefix {text!r}: expected 1 to {MAX_PREFIX} digits")
        try:
            rate = float(rate_text)  # float() itself allows surrounding blanks
        except ValueError:
            rate = _money(rate_text, "rate", required=True)
        if not 0.0 <= rate < math.inf:  # NaN fails too
            raise ValueError(f"bad rate {rate_text!r}: expected a number >= 0")
        fee = _money(fee_text, "connect_fee") if fee_text and fee_text != "0" else 0.0
        first = self.firsts.get(first_text)
        if first is None:
            first = self.firsts[first_text] = _increment(first_text, "first_increment", 0)
        step = self.nexts.get(next_text)
        if step is None:
            step = self.nexts[next_text] = _increment(next_text, "next_increment", 1)
        dates = self.dates
        start = dates[from_text] if from_text in dates else self._date(from_text, "effective_from")
        end = dates[to_text] if to_text in dates else self._date(to_text, "effective_to")
        if start is not None and end is not None and end <= start:
            raise ValueError(f"effective_to {to_text!r} is not after effective_from {from_text!r}")
        return (self.carrier, prefix, rate, fee, first, step, start, end)

    def _date(self, text: str, name: str) -> float | None:
        value = self.dates[text] = _date(text.strip(), name)
        return value


def _money(text: str, name: str, *, required: bool = False) -> float:
    try:
        value = float(text)  # float() itself allows surrounding blanks
    except ValueError:
        if not text.strip():
            if required:
                raise ValueError(f"{name} is missing") from None
            return 0.0
        raise ValueError(f"bad {name} {text!r}: expected a number") from None
    if not 0.0 <= value < math.inf:  # NaN fails too
        raise ValueError(f"bad {name} {text!r}: expected a number >= 0")
    return value


def _increment(text: str, name: str, minimum: int) -> int:
    digits = text.strip()
    if not digits:
        return 60
    if not digits.isascii() or not digits.isdigit() or not minimum <= int(digits) <= 86400:
        raise ValueError(f"bad {name} {text!r}: expected whole seconds, {minimum} to 86400")
    return int(digits)


def _date(text: str, name: str) -> float | None:
    if not text:
        return None
    try:
        value = float(text)
        if math.isfinite(value):
            return value
    except ValueError:
        pass
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"bad {name} {text!r}: expected epoch seconds or an ISO 8601 date"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


async def write_deck(db: Database, deck: Deck, *, progress: Progress | None = None) -> int:
    """Replace the carrier's deck with ``deck`` in one transaction; the rows written."""
    async with db.transaction() as tx:
        if not await tx.fetchone("SELECT 1 FROM carriers WHERE name = ?", (deck.carrier,)):
            raise UnknownCarrier(f"no carrier {deck.carrier}: add it with `sipline carrier add`")
        await tx.execute("DELETE FROM rates WHERE carrier = ?", (deck.carrier,))
        if db.dialect == "mysql":
            await _load(tx, deck.rows, progress)
        else:
            for start in range(0, len(deck.rows), CHUNK_ROWS):
                chunk = deck.rows[start : start + CHUNK_ROWS]
                await tx.executemany(_INSERT, chunk)
                if progress is not None:
                    progress(len(chunk))
        await bump_version(tx)
    return len(deck.rows)


async def _load(tx: Queries, rows: list[DeckRow], progress: Progress | None) -> None:
    # LOAD DATA LOCAL INFILE of files written from the checked rows: 1M rows in about
    # 6 s on MariaDB, INSERT took 15 s (bench/deck_import.py). It is transactional, so
    # readers see the old deck until the commit. Each file goes in one protocol packet
    # (aiomysql does not split it below 16 MB): keep it under max_allowed_packet.
    found = await tx.fetchone("SELECT @@max_allowed_packet")
    limit = int(found[0]) - 1024 if found else 1 << 20
    with tempfile.TemporaryDirectory(prefix="sipline-deck-") as tmp:
        path = str(Path(tmp) / "rates.tsv")
        for start in range(0, len(rows), CHUNK_ROWS):
            chunk = rows[start : start + CHUNK_ROWS]
            await _load_file(tx, path, chunk, limit)
            if progress is not None:
                progress(len(chunk))


async def _load_file(tx: Queries, path: str, rows: list[DeckRow], limit: int) -> None:
    data = _load_text(rows)
    if len(data) > limit and len(rows) > 1:
        half = len(rows) // 2
        await _load_file(tx, path, rows[:half], limit)
        await _load_file(tx, path, rows[half:], limit)
        return
    with open(path, "wb") as out:
        out.write(data)
    loaded = await tx.execute(_LOAD, (path,))
    # With LOCAL the server turns a bad value into a warning and goes on (a NULL
    # becomes 0): what the checks let through must still not load half right.
    warnings = await tx.fetchone("SELECT @@warning_count")
    if loaded != len(rows) or (warnings and int(warnings[0])):
        shown = await tx.fetchall("SHOW WARNINGS LIMIT 3")
        reasons = "; ".join(str(message) for _level, _code, message in shown)
        raise StorageError(
            f"LOAD rates failed: {loaded} of {len(rows)} rows loaded: {reasons or 'no reason'}"
        )


def _load_text(rows: list[DeckRow]) -> bytes:
    """``rows`` in LOAD DATA's default format: tab-separated, ``\\N`` for NULL; the
    carrier and prefix are checked names and digits, so nothing needs escaping."""
    null = "\\N"
    return "".join(
        f"{carrier}\t{prefix}\t{rate!r}\t{fee!r}\t{first}\t{step}\t"
        f"{null if start is None else repr(start)}\t{null if end is None else repr(end)}\n"
        for carrier, prefix, rate, fee, first, step, start, end in rows
    ).encode()


def read_lines(path: Path) -> Iterator[str]:
    """The lines of a deck file (UTF-8, a BOM allowed), for parse_deck."""
    with path.open("r", encoding="utf-8-sig", newline="") as handle:
        yield from handle


def deck_text(rows: Iterable[Iterable[Any]], header: Iterable[str] | None = None) -> str:
    """CSV text of ``rows`` (for tests and the benchmark)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    if header is not None:
        writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue()
