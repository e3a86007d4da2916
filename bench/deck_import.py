"""Rate deck import benchmark: generate a deck CSV, import it as ``sipline rates import`` does.

    python -m bench.deck_import --rows 1000000 --url mysql://root@127.0.0.1:3306/bench_deck

The database must exist (it is migrated here); the carrier ``bench`` is added
if missing and its deck replaced. Prints the time to check the file, to write
it, and rows/s over both (what an operator waits for). The first run on a
fresh database loads into an empty table; run it again on the same database
to measure a replace (the old million rows deleted in the same transaction).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

from acr.provision import count_lines, progress_bar
from sipline.carriers.deck import parse_deck, read_lines, write_deck
from sipline.carriers.model import Carrier, Gateway
from sipline.carriers.store import AcrStore, DuplicateCarrier
from sipline.storage import migrate, open_database

CARRIER = "bench"
# Country codes the generated prefixes start with, so the deck looks like one.
COUNTRIES = ("1", "7", "20", "27", "30", "31", "33", "34", "39", "44", "49", "52", "55", "61",
             "81", "86", "91", "234", "351", "880")  # fmt: skip


def write_csv(path: Path, rows: int) -> None:
    """``rows`` distinct prefixes with every column (rates, fees, increments, one date)."""
    with path.open("w") as out:
        out.write("prefix,rate,connect_fee,first_increment,next_increment,effective_from\n")
        for i in range(rows):
            country = COUNTRIES[i % len(COUNTRIES)]
            rate = (i * 7919) % 20000 / 100000
            step = (60, 6, 1)[i % 3]
            out.write(f"{country}{i:08d},{rate:.5f},0,{step},{step},2025-01-01\n")


async def run(url: str, path: Path, quiet: bool) -> tuple[int, float, float, float]:
    db = await open_database(url)
    try:
        await migrate(db)
        store = AcrStore(db)
        try:
            await store.add_carrier(Carrier(CARRIER, (Gateway(CARRIER, "192.0.2.250", 5060),)))
        except DuplicateCarrier:
            pass
        with progress_bar(not quiet) as bar:
            started = time.perf_counter()
            step = bar(f"checking {path.name}", count_lines(path))
            deck = parse_deck(read_lines(path), CARRIER, path=str(path), progress=step)
            checked = time.perf_counter()
            await write_deck(db, deck, progress=bar("loading", len(deck.rows)))
            written = time.perf_counter()
        # What an ACR node does when the version moves: read every effective rate back.
        loaded = await store.rates(time.time())
        reloaded = time.perf_counter() - written
        assert len(loaded) >= len(deck.rows)
        return len(deck.rows), checked - started, written - checked, reloaded
    finally:
        await db.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.deck_import", description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--url", required=True, help="mysql://... or sqlite:///...")
    parser.add_argument("--csv", type=Path, help="keep the generated deck here")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        path = args.csv or Path(tmp) / f"deck-{args.rows}.csv"
        began = time.perf_counter()
        write_csv(path, args.rows)
        print(f"generated {args.rows} rows ({path.stat().st_size / 1e6:.1f} MB) in "
              f"{time.perf_counter() - began:.1f} s", file=sys.stderr)  # fmt: skip
        rows, check, write, reload = asyncio.run(run(args.url, path, args.quiet))
    total = check + write
    print(f"deck import: {rows} rows in {total:.2f} s = {rows / total:,.0f} rows/s "
          f"(check {check:.2f} s, write {write:.2f} s = {rows / write:,.0f} rows/s); "
          f"AcrStore.rates() reads them back in {reload:.2f} s")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
