"""The portal's running CDR totals (portal.rollup): sans-IO, then loaded and followed
on a real database."""

from __future__ import annotations

from pathlib import Path

import pytest

from portal.rollup import HOUR, OVERLAP, Rollup, month_start, refresh
from sipline.storage import Database
from tests.portal.support import add_cdrs

NOW = 1_765_000_000.0  # 2025-12-06T05:46:40Z
DAY_START = NOW - NOW % 86400


def row(id_: int, account: str | None = "ACME", carrier: str = "acme", started: float = NOW - 60,
        answered: float | None = NOW - 58, ended: float = NOW - 30, billed: int = 60,
        cost: float = 0.01) -> tuple[object, ...]:  # fmt: skip
    return (id_, account, carrier, started, answered, ended, billed, cost)


def test_rows_are_counted_once_even_out_of_id_order() -> None:
    rollup = Rollup(since=month_start(NOW))
    rollup.add([row(1), row(3, answered=None, billed=0, cost=0.0)], NOW)
    rollup.add([row(1), row(2, account="GLOBEX", carrier="globex"), row(3)], NOW)  # 2 came late
    today = rollup.totals(DAY_START)
    assert (today["ACME"].calls, today["ACME"].answered, today["ACME"].cost) == (2, 1, 0.01)
    assert today["GLOBEX"].calls == 1
    assert [(c.carrier, c.calls, c.asr, c.acd) for c in rollup.carriers(NOW)] == [
        ("acme", 2, 0.5, 28.0), ("globex", 1, 1.0, 28.0)]
    assert [c.carrier for c in rollup.carriers(NOW, "GLOBEX")] == ["globex"]
    rollup.add([row(3 + OVERLAP + 1)], NOW)
    rollup.add([row(2)], NOW)  # too far below the last id: taken as counted
    assert rollup.totals(DAY_START)["GLOBEX"].calls == 1
    assert len(rollup.seen) <= OVERLAP + 1


def test_the_hour_and_the_month_roll_over() -> None:
    rollup = Rollup(since=month_start(NOW))
    rollup.add([row(1, started=NOW - 30 * 60), row(2, started=NOW - 90 * 60)], NOW)
    assert [c.calls for c in rollup.carriers(NOW)] == [1]  # the other started over an hour ago
    rollup.expire(NOW + HOUR)
    assert rollup.carriers(NOW + HOUR) == [] and not rollup.minutes
    assert rollup.totals(DAY_START)["ACME"].calls == 2
    next_month = month_start(NOW) + 40 * 86400
    rollup.expire(next_month)
    assert rollup.totals(0) == {} and rollup.since == month_start(next_month)


async def test_loaded_from_the_database_then_followed(migrated: Database, tmp_path: Path) -> None:
    import time

    now = time.time()
    await add_cdrs(migrated, [{"account": "ACME", "started_at": now - 120, "cost": 0.25},
                              {"account": None, "started_at": now - 100, "cost": 0.5}])  # fmt: skip
    rollup = Rollup()
    await refresh(migrated, rollup, now)
    today = rollup.totals(now - now % 86400)
    assert (today["ACME"].cost, today[None].cost) == (0.25, 0.5)
    await add_cdrs(migrated, [{"account": "ACME", "started_at": now - 10, "cost": 1.0,
                               "call_id": "later"}])  # fmt: skip
    await refresh(migrated, rollup, now)
    await refresh(migrated, rollup, now)  # nothing new: nothing counted twice
    assert rollup.totals(now - now % 86400, "ACME")["ACME"].cost == pytest.approx(1.25)
    assert [(c.carrier, c.calls) for c in rollup.carriers(now)] == [("acme", 3)]


async def test_a_row_committed_after_a_higher_id_is_counted(migrated: Database) -> None:
    import time

    now = time.time()
    await add_cdrs(migrated, [{"account": "ACME", "started_at": now - 50, "call_id": f"c{i}"}
                              for i in range(3)])  # fmt: skip
    rollup = Rollup()
    await refresh(migrated, rollup, now)
    # Row 2 was not visible yet when the rollup was loaded: as if committed late.
    rollup.days.clear()
    rollup.minutes.clear()
    rollup.seen.discard(2)
    await refresh(migrated, rollup, now)
    assert rollup.totals(now - now % 86400)["ACME"].calls == 1  # only the late one, once
