"""Running totals of the CDRs, kept by the portal: each account's calls and cost per
day (today's and this month's come from them) and each carrier's calls, answers
and talk time per minute over the last hour (ASR and ACD), per account.

Summing the CDRs of a day for every dashboard frame would read 17 million rows a
day at 200 calls/s; instead the rollup reads the month once when the portal
starts, then only the CDRs written since (``id`` above the last one it saw),
every ``portal.live_interval``. Ids are given out before the rows commit, so a
row with a lower id may become visible after a higher one (two ACR nodes
writing at once): each read goes back ``OVERLAP`` ids and skips the ones it
has counted already.

``Rollup`` is sans-IO (rows in, figures out, the caller passes ``now``);
``refresh(db, rollup, now)`` is the I/O around it.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sipline.storage.cdrs import CarrierFigures, Totals
from sipline.storage.database import Database

DAY = 86400
MINUTE = 60
HOUR = 3600
OVERLAP = 5000  # ids read again: rows committed out of id order within this many are counted
BATCH = 20_000  # rows per incremental read
Row = tuple[Any, ...]  # id, account, carrier, started_at, answered_at, ended_at, billed, cost


def month_start(now: float) -> float:
    day = datetime.fromtimestamp(now, UTC)
    return day.replace(day=1, hour=0, minute=0, second=0, microsecond=0).timestamp()


@dataclass(slots=True)
class Rollup:
    """The totals; ``since`` is where they begin (the month's start when loaded)."""

    since: float = 0.0
    last_id: int = 0
    loaded: bool = False
    # (account, day start) -> [calls, answered, billed seconds, cost]
    days: dict[tuple[str | None, int], list[float]] = field(default_factory=lambda: defaultdict(lambda: [0, 0, 0, 0.0]))
    # (account, carrier, minute start) -> [calls, answered, talk seconds]
    minutes: dict[tuple[str | None, str, int], list[float]] = field(default_factory=lambda: defaultdict(lambda: [0, 0, 0.0]))
    seen: set[int] = field(default_factory=set)  # ids counted within OVERLAP of last_id

    def add(self, rows: list[Row], now: float) -> None:
        """Count CDRs (once each: ids already seen are skipped)."""
        hour_ago = now - HOUR
        for id_, account, carrier, started, answered, ended, billed, cost in rows:
            id_ = int(id_)
            if id_ in self.seen or id_ <= self.last_id - OVERLAP:
                continue
            self.seen.add(id_)
            self.last_id = max(self.last_id, id_)
            started = float(started)
            if started < self.since:
                continue
            day = self.days[(account, int(started // DAY * DAY))]
            day[0] += 1
            day[1] += answered is not None
            day[2] += int(billed)
            day[3] += float(cost)
            if started >= hour_ago:
                minute = self.minutes[(account, carrier, int(started // MINUTE * MINUTE))]
                minute[0] += 1
                if answered is not None:
                    minute[1] += 1
                    minute[2] += max(float(ended) - float(answered), 0.0)
        floor = self.last_id - OVERLAP
        self.seen = {i for i in self.seen if i > floor}

    def expire(self, now: float) -> None:
        """Forget minutes older than the hour and days before this month."""
        oldest = now - HOUR
        for key in [k for k in self.minutes if k[2] + MINUTE <= oldest]:
            del self.minutes[key]
        start = month_start(now)
        if start > self.since:  # a new month: last month's days go
            for key in [k for k in self.days if k[1] < start]:
                del self.days[key]
            self.since = start

    def totals(self, since: float, account: str | None = None) -> dict[str | None, Totals]:
        """Per account (one, when given): calls started since ``since`` (a day's start)."""
        found: dict[str | None, list[float]] = defaultdict(lambda: [0, 0, 0, 0.0])
        for (acct, day), values in self.days.items():
            if day >= since and (account is None or acct == account):
                row = found[acct]
                for i, value in enumerate(values):
                    row[i] += value
        return {a: Totals(int(v[0]), int(v[1]), int(v[2]), round(v[3], 6)) for a, v in found.items()}

    def carriers(self, now: float, account: str | None = None) -> list[CarrierFigures]:
        """ASR and ACD per carrier over the calls started in the last hour."""
        oldest = now - HOUR
        found: dict[str, list[float]] = defaultdict(lambda: [0, 0, 0.0])
        for (acct, carrier, minute), values in self.minutes.items():
            if minute + MINUTE > oldest and (account is None or acct == account):
                row = found[carrier]
                for i, value in enumerate(values):
                    row[i] += value
        return [CarrierFigures(c, int(v[0]), int(v[1]), v[2]) for c, v in sorted(found.items())]


_COLUMNS = "id, account, carrier, started_at, answered_at, ended_at, billed_seconds, cost"


async def refresh(db: Database, rollup: Rollup, now: float | None = None) -> None:
    """Bring ``rollup`` up to the CDRs written now: the month at the first call, then
    what came since."""
    now = time.time() if now is None else now
    if not rollup.loaded:
        await _load(db, rollup, now)
        return
    rollup.expire(now)
    while True:
        # The ids first (cheap): the rows of those not counted yet, then, only.
        ids = [int(r[0]) for r in await db.fetchall(
            "SELECT id FROM cdrs WHERE id > ? ORDER BY id LIMIT ?",
            (max(rollup.last_id - OVERLAP, 0), BATCH + OVERLAP),
        )]  # fmt: skip
        late = [i for i in ids if i <= rollup.last_id and i not in rollup.seen]
        rows: list[Row] = []
        if late:
            marks = ", ".join("?" * len(late))
            rows += await db.fetchall(f"SELECT {_COLUMNS} FROM cdrs WHERE id IN ({marks})", late)
        if ids and ids[-1] > rollup.last_id:
            rows += await db.fetchall(
                f"SELECT {_COLUMNS} FROM cdrs WHERE id > ? AND id <= ? ORDER BY id",
                (rollup.last_id, ids[-1]),
            )
        rollup.add(rows, now)
        if len(ids) < BATCH + OVERLAP:
            return


async def _load(db: Database, rollup: Rollup, now: float) -> None:
    """The month so far, summed by the database (one pass at start)."""
    row = await db.fetchone("SELECT MAX(id) FROM cdrs")
    top = int(row[0]) if row and row[0] is not None else 0
    start = month_start(now)
    day = f"FLOOR(started_at / {DAY}) * {DAY}"
    days = await db.fetchall(
        f"SELECT account, {day}, COUNT(*), SUM(CASE WHEN answered_at IS NULL THEN 0 ELSE 1 END),"
        f" SUM(billed_seconds), SUM(cost) FROM cdrs WHERE started_at >= ? AND id <= ?"
        f" GROUP BY account, {day}",
        (start, top),
    )
    minute = f"FLOOR(started_at / {MINUTE}) * {MINUTE}"
    minutes = await db.fetchall(
        f"SELECT account, carrier, {minute}, COUNT(*),"
        " SUM(CASE WHEN answered_at IS NULL THEN 0 ELSE 1 END),"
        " SUM(CASE WHEN answered_at IS NULL THEN 0 ELSE ended_at - answered_at END)"
        f" FROM cdrs WHERE started_at >= ? AND id <= ? GROUP BY account, carrier, {minute}",
        (now - HOUR, top),
    )
    rollup.since = start
    for account, at, calls, answered, billed, cost in days:
        rollup.days[(account, int(at))] = [int(calls), int(answered or 0), int(billed or 0),
                                           float(cost or 0)]  # fmt: skip
    for account, carrier, at, calls, answered, talk in minutes:
        rollup.minutes[(account, carrier, int(at))] = [int(calls), int(answered or 0),
                                                       float(talk or 0)]  # fmt: skip
    # The last OVERLAP ids are read again next time: those counted are marked seen.
    recent = await db.fetchall("SELECT id FROM cdrs WHERE id > ? AND id <= ?",
                               (max(top - OVERLAP, 0), top))  # fmt: skip
    rollup.seen = {int(r[0]) for r in recent}
    rollup.last_id = top
    rollup.loaded = True
