"""The ``nodes`` table (migration 007): who runs where, for ``sipline status``
and config pushes when there is no Redis to hear from the nodes.

A node records itself at start (``record``: an upsert by name, so a restart
takes its row back) and marks its row stopped when it stops cleanly; a row
that says running but whose node does not answer is a node that died.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from sipline.storage.database import Database, Queries

_COLUMNS = "name, role, address, admin, version, started_at, stopped_at"


@dataclass(frozen=True, slots=True)
class Entry:
    name: str
    role: str
    address: str
    admin: str  # HOST:PORT of its admin endpoint
    version: str
    started_at: float
    stopped_at: float | None  # set by a clean stop

    @property
    def stopped(self) -> bool:
        return self.stopped_at is not None


async def record(db: Database, entry: Entry) -> None:
    """This node runs now (its row replaced, ``stopped_at`` cleared)."""
    async with db.transaction() as tx:
        changed = await tx.execute(
            "UPDATE nodes SET role = ?, address = ?, admin = ?, version = ?, started_at = ?,"
            " stopped_at = NULL WHERE name = ?",
            (entry.role, entry.address, entry.admin, entry.version, entry.started_at, entry.name),
        )
        if not changed:
            await tx.execute(
                f"INSERT INTO nodes ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, NULL)",
                (entry.name, entry.role, entry.address, entry.admin, entry.version,
                 entry.started_at),
            )  # fmt: skip


async def mark_stopped(db: Queries, name: str, at: float | None = None) -> None:
    await db.execute(
        "UPDATE nodes SET stopped_at = ? WHERE name = ?", (time.time() if at is None else at, name)
    )


async def entries(db: Queries, role: str | None = None) -> list[Entry]:
    """Every recorded node (of ``role``), by name."""
    where, params = ("WHERE role = ? ", (role,)) if role else ("", ())
    rows = await db.fetchall(f"SELECT {_COLUMNS} FROM nodes {where}ORDER BY name", params)
    return [
        Entry(n, r, a, adm, v, float(s), None if t is None else float(t))
        for n, r, a, adm, v, s, t in rows
    ]


async def forget(db: Queries, name: str) -> bool:
    """Remove a node's row (a node taken out of the cluster for good)."""
    return bool(await db.execute("DELETE FROM nodes WHERE name = ?", (name,)))
