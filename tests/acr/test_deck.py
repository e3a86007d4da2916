"""Rate decks: every row checked before anything is written, bad rows named by line, atomic replace."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

import pytest

from sipline.carriers.deck import (
    CHUNK_ROWS,
    DeckError,
    _load_file,
    deck_text,
    parse_deck,
    read_lines,
    write_deck,
)
from sipline.carriers.model import Carrier, Gateway, Rate
from sipline.carriers.store import AcrStore, UnknownCarrier
from sipline.storage import Database, InvalidValue, StorageError, migrate, open_database


def lines(text: str) -> list[str]:
    return text.splitlines(keepends=True)


def test_prefix_and_rate_alone_take_the_defaults() -> None:
    deck = parse_deck(lines("+4420,0.012\n33,0.02\n"), "acme")
    assert deck.rows == [
        ("acme", "4420", 0.012, 0.0, 60, 60, None, None),
        ("acme", "33", 0.02, 0.0, 60, 60, None, None),
    ]


def test_every_column_in_order() -> None:
    deck = parse_deck(lines("4420,0.012,0.05,6,6,1700000000,2025-01-01\n"), "acme")
    assert deck.rows == [("acme", "4420", 0.012, 0.05, 6, 6, 1700000000.0, 1735689600.0)]


def test_a_header_names_the_columns_in_any_order() -> None:
    text = "rate,prefix,next_increment,effective_from\n0.01,44,1,2025-01-01T01:00:00+01:00\n"
    deck = parse_deck(lines(text), "acme")
    assert deck.rows == [("acme", "44", 0.01, 0.0, 60, 1, 1735689600.0, None)]


def test_empty_cells_and_blank_lines_take_the_defaults() -> None:
    deck = parse_deck(lines("prefix,rate,connect_fee,first_increment\n\n44,0.01,,\n"), "acme")
    assert deck.rows == [("acme", "44", 0.01, 0.0, 60, 60, None, None)]


def test_bad_rows_are_reported_by_line_number() -> None:
    text = "\n".join(
        [
            "prefix,rate,connect_fee,first_increment,next_increment,effective_from,effective_to",
            "44,0.01",  # line 2: good
            "44x,0.01",  # 3: bad prefix
            "45,cheap",  # 4: bad rate
            "46,-1",  # 5: negative
            "47,0.01,,6,0",  # 6: next_increment 0
            "48,0.01,,,,2025-02-01,2025-01-01",  # 7: ends before it starts
            "49,0.01,,,,someday",  # 8: bad date
            "44,0.02",  # 9: prefix twice
            "50,0.01,0,60,60,,,extra",  # 10: too many columns
            "51,nan",  # 11: not a number >= 0
            "52",  # 12: rate missing
        ]
    )
    with pytest.raises(DeckError) as caught:
        parse_deck(lines(text), "acme", path="acme.csv")
    assert [line for line, _ in caught.value.errors] == list(range(3, 13))
    message = str(caught.value)
    assert message.startswith("acme.csv: 10 bad row(s), nothing loaded")
    assert "line 3: bad prefix '44x'" in message
    assert "line 9: prefix 44 is listed twice" in message
    assert isinstance(caught.value, InvalidValue)


def test_the_same_prefix_may_have_successive_effective_dates() -> None:
    text = "44,0.01,,,,,2025-01-01\n44,0.02,,,,2025-01-01,\n"
    assert len(parse_deck(lines(text), "acme").rows) == 2


def test_only_the_first_errors_are_listed_with_the_total() -> None:
    with pytest.raises(DeckError) as caught:
        parse_deck(lines("44,bad\n" * 100), "acme")
    assert len(caught.value.errors) == 20 and caught.value.total == 100
    assert "... and 80 more" in str(caught.value)


def test_a_bad_header_is_refused() -> None:
    with pytest.raises(DeckError, match="line 1: bad header 'prefix,price'"):
        parse_deck(lines("prefix,price\n44,0.01\n"), "acme")


def test_an_empty_deck_is_refused() -> None:
    with pytest.raises(DeckError, match="no rows"):
        parse_deck(lines("prefix,rate\n"), "acme")


def test_progress_counts_every_line() -> None:
    done: list[int] = []
    parse_deck(
        lines(deck_text((str(n), 0.01) for n in range(1, 25_001))), "acme", progress=done.append
    )
    assert sum(done) == 25_000


# -- writing, on SQLite and MariaDB ------------------------------------------------------------


@pytest.fixture
async def store(migrated: Database) -> AcrStore:
    store = AcrStore(migrated)
    await store.add_carrier(Carrier("acme", (Gateway("acme", "127.0.0.1", 5090),)))
    await store.add_carrier(Carrier("other", (Gateway("other", "127.0.0.1", 5091),)))
    return store


async def test_a_deck_replaces_the_previous_one_of_its_carrier_only(store: AcrStore) -> None:
    await write_deck(store.db, parse_deck(lines("44,0.02\n33,0.03\n"), "acme"))
    await write_deck(store.db, parse_deck(lines("1,0.5\n"), "other"))
    version = await store.version()
    written = await write_deck(store.db, parse_deck(lines("4420,0.01,0.1,6,6\n"), "acme"))
    assert written == 1
    assert await store.deck("acme") == [Rate("acme", "4420", 0.01, 0.1, 6, 6)]
    assert await store.deck("other") == [Rate("other", "1", 0.5)]
    assert await store.version() > version


async def test_a_big_deck_is_written_in_chunks_with_progress(store: AcrStore) -> None:
    rows = CHUNK_ROWS + 1234
    deck = parse_deck(lines(deck_text((str(10_000_000 + n), 0.01) for n in range(rows))), "acme")
    done: list[int] = []
    assert await write_deck(store.db, deck, progress=done.append) == rows
    assert done == [CHUNK_ROWS, 1234]
    assert await store.deck_sizes() == {"acme": rows}


async def test_a_deck_for_an_unknown_carrier_writes_nothing(store: AcrStore) -> None:
    with pytest.raises(UnknownCarrier, match="no carrier ghost"):
        await write_deck(store.db, parse_deck(lines("44,0.01\n"), "ghost"))
    assert await store.deck_sizes() == {}


async def test_a_failed_write_keeps_the_old_deck(store: AcrStore) -> None:
    await write_deck(store.db, parse_deck(lines("44,0.02\n"), "acme"))
    deck = parse_deck(lines("45,0.01\n46,0.01\n"), "acme")
    deck.rows[1] = ("acme", "46", None, 0.0, 60, 60, None, None)  # type: ignore[assignment]
    with pytest.raises(StorageError, match="rates failed"):  # NOT NULL: the database refuses
        await write_deck(store.db, deck)
    assert await store.deck("acme") == [Rate("acme", "44", 0.02)]


async def test_every_value_reads_back_exactly_as_checked(store: AcrStore) -> None:
    text = (
        "4420,0.30000000000000004,1e-07,1,1,1700000000.123456,2025-01-01T00:00:00.5+00:00\n"
        "33,123456.78901234567,0,0,86400,,1800000000\n"
        "1,0,0.1,6,6,,\n"
    )
    deck = parse_deck(lines(text), "acme")
    await write_deck(store.db, deck)
    assert await store.deck("acme") == sorted(
        (Rate(*row) for row in deck.rows), key=lambda rate: rate.prefix
    )


async def test_readers_see_the_old_deck_or_the_new_one_never_half(store: AcrStore) -> None:
    old = parse_deck(lines(deck_text((str(n), 0.02) for n in range(1, 1001))), "acme")
    await write_deck(store.db, old)
    rows = 2 * CHUNK_ROWS + 10
    new = parse_deck(lines(deck_text((str(10_000_000 + n), 0.01) for n in range(rows))), "acme")
    before = await store.version()

    async def look() -> tuple[int, int]:
        async with store.db.transaction() as tx:
            version = await tx.fetchone("SELECT version FROM acr_version")
            size = await tx.fetchone("SELECT COUNT(*) FROM rates WHERE carrier = 'acme'")
        assert version is not None and size is not None
        return int(version[0]), int(size[0])

    writing = asyncio.create_task(write_deck(store.db, new))
    seen: set[tuple[int, int]] = set()
    for _ in range(2_000):  # bounded: the write takes seconds at most
        if writing.done():
            break
        seen.add(await look())
        await asyncio.sleep(0.005)
    await writing
    assert seen <= {(before, 1000), (before + 1, rows)}
    assert await look() == (before + 1, rows)


async def test_a_load_file_over_the_packet_limit_goes_in_parts(mysql_url: str) -> None:
    db = await open_database(mysql_url)
    try:
        await migrate(db)
        deck = parse_deck(lines(deck_text((str(n), 0.01) for n in range(1, 101))), "acme")
        async with db.transaction() as tx:
            await _load_file(tx, str(Path(tempfile.mkdtemp()) / "rates.tsv"), deck.rows, 500)
            loaded = await tx.fetchall("SELECT prefix FROM rates ORDER BY id")
        assert [prefix for (prefix,) in loaded] == [str(n) for n in range(1, 101)]
    finally:
        await db.close()


def test_an_unreadable_file_is_a_bad_deck_not_a_crash(tmp_path: Path) -> None:
    deck = tmp_path / "latin1.csv"
    deck.write_bytes(b"44,0.01\n33,0.02\n" + "45,0.01 \u00e9\n".encode("latin-1"))
    with pytest.raises(DeckError, match="unreadable"):
        parse_deck(read_lines(deck), "acme", path=str(deck))
    with pytest.raises(DeckError, match="line 2: bad prefix"):  # a NUL byte
        parse_deck(["44,0.01\n", "4\x005,0.01\n"], "acme")
