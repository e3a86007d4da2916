"""How long the ACR's re-ranking of 1,000,000 deck rows holds up the event loop.

``python -m bench.acr_refresh_lag`` builds the table of bench/micro/test_acr_bench.py
(20 carriers, 5000 (carrier, prefix) pairs with figures in a real CarrierStats),
then re-ranks it three times each way while a 1 ms ticker measures the loop's
worst lag: ``RouteTable.refresh`` on the loop (how the node did it) and
``acr.server.rerank`` (snapshot on the loop, numpy ranking in a thread, swapped
in on the loop). Prints one line per case.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from types import SimpleNamespace

from acr.server import rerank
from acr.stats import Attempt, CarrierStats
from bench.micro import test_acr_bench as deck


async def lag_during(work: Callable[[], Awaitable[None]]) -> tuple[float, float]:
    """(seconds ``work`` took, the loop's worst lag meanwhile)."""
    worst = 0.0
    done = False

    async def ticker() -> None:
        nonlocal worst
        while not done:
            start = time.perf_counter()
            await asyncio.sleep(0.001)
            worst = max(worst, time.perf_counter() - start - 0.001)

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0.01)
    start = time.perf_counter()
    await work()
    took = time.perf_counter() - start
    done = True
    await task
    return took, worst


async def main() -> None:
    carriers, rates = deck.decks()
    table = deck.build(carriers, rates)
    stats = CarrierStats(600.0)
    rng = random.Random(3)
    for rate in rng.sample(rates, 5000):
        stats.record_attempt(Attempt(rate.carrier, rate.prefix, "gw", 0, 200, 1.0, True))
    health = deck.Health()
    live = SimpleNamespace(stats=stats, view=health)
    table.refresh(stats, health, deck.NOW)
    spares = [0.5, 1.0]

    def move() -> None:
        spares.reverse()
        health.spare = spares[0]  # availability beyond the band: every prefix re-ranked

    async def on_loop() -> None:
        table.refresh(stats, health, deck.NOW)

    async def off_loop() -> None:
        await rerank(table, live, deck.NOW)  # type: ignore[arg-type]

    for case, change in (("availability moved (full re-rank)", move), ("nothing moved", None)):
        for how, work in (("on the loop", on_loop), ("rerank (thread)", off_loop)):
            results = []
            for _ in range(3):
                if change is not None:
                    change()
                results.append(await lag_during(work))
            took = max(r[0] for r in results) * 1e3
            lag = max(r[1] for r in results) * 1e3
            print(f"{case:36} {how:16} took {took:7.1f} ms  worst loop lag {lag:6.1f} ms")


if __name__ == "__main__":
    asyncio.run(main())
