"""What the ACR's journal costs a call: ``python -m bench.journal_commit``.

Calls arrive at ``--rates`` per second for ``--seconds``; each appends its answer
(and waits for it to be on disk, as the router holds the 200) and, ``--hold``
seconds later, its CDR (waited for too: the router holds the BYE). Printed per rate: the delay the answer waits for the disk
(p50, p99), fdatasyncs per call, and the process CPU per call (the event loop's
appends and callbacks plus the journal thread's writes) beyond that of the same
loop without a journal. On uvloop, as a node runs. The journal lives in ``--dir``
(default: a temporary directory on the disk of the working directory).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

import uvloop

from acr.journal import Journal
from sipline.carriers.model import Cdr


def cdr(n: int, now: float) -> Cdr:
    return Cdr(
        call_id=f"bench-{n}-0123456789abcdef@10.0.0.1", account="ACME", caller="alice",
        callee="442071234567", prefix="4420", carrier="acme", gateway="10.0.0.9:5060",
        rate=0.012, start=now - 2, end=now, final_code=200, node="primary", answer=now,
        first_increment=6, next_increment=6,
    )  # fmt: skip


def _relay_bye(on_disk: bool) -> None:
    """The router relays the BYE once its CDR is on disk (here: nothing to relay)."""


async def calls(
    journal: Journal | None, rate: float, seconds: float, hold: float
) -> tuple[float, list[float]]:
    """Place the calls: the process CPU seconds they took, and how long each answer
    waited for the disk. Without a journal: the baseline."""
    loop = asyncio.get_running_loop()
    clock = time.perf_counter  # (uvloop's loop.time() counts milliseconds)
    waits: list[float] = []
    cpu, start = time.process_time(), loop.time()
    for n in range(int(rate * seconds)):
        delay = start + n / rate - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        answered = cdr(n, time.time())
        sent = clock()
        if journal is not None:
            journal.answered(answered, None, lambda ok, sent=sent: waits.append(clock() - sent))
            loop.call_later(hold, journal.ended, answered, _relay_bye)
    await asyncio.sleep(hold + 0.1)
    if journal is not None:
        await journal.sync()
    return time.process_time() - cpu, waits


async def run(directory: Path, rate: float, seconds: float, hold: float, commit_ms: float) -> str:
    baseline, _ = await calls(None, rate, seconds, hold)
    journal = Journal(directory, commit_ms=commit_ms)
    await journal.open()
    await journal.sync()
    commits = journal.commits
    cpu, waits = await calls(journal, rate, seconds, hold)
    fsyncs = journal.commits - commits
    await journal.close()
    waits.sort()
    n = len(waits)
    p50, p99 = statistics.median(waits), waits[int(n * 0.99) - 1]
    return (
        f"{rate:>8.0f} {n:>7} {p50 * 1000:>8.2f} {p99 * 1000:>8.2f} "
        f"{fsyncs / n:>9.3f} {(cpu - baseline) / n * 1e6:>10.1f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", default="100,1000", help="calls per second, comma-separated")
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--hold", type=float, default=0.5, help="seconds from answer to CDR")
    parser.add_argument("--commit-ms", type=float, default=1.0)
    parser.add_argument("--dir", type=Path, default=None)
    args = parser.parse_args()
    print("    rate   calls  p50 ms   p99 ms  fsync/call  cpu us/call")
    for rate in (float(r) for r in args.rates.split(",")):
        with tempfile.TemporaryDirectory(prefix="journal-", dir=args.dir or Path.cwd()) as where:
            print(uvloop.run(run(Path(where), rate, args.seconds, args.hold, args.commit_ms)))


if __name__ == "__main__":
    main()
