"""The locations table (sipline/storage/migrations 001, 002): bindings as rows and back.

Writes are idempotent upserts on the (aor, contact) key, so a binding written
after a sweep deleted its old row simply comes back. Every delete that is not
an explicit unregistration carries a condition on ``expires_at``, so it cannot
remove a binding that was refreshed after the decision to delete was taken.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from proxy.location import Binding
from sipline.sip.address import Address
from sipline.sip.headers import split_values
from sipline.storage import Database, Row

# Bindings of a node that stopped sweeping (gone for good) are deleted by any
# other node once they have been expired this long.
ORPHAN_GRACE = 3600.0

COLUMNS = (
    "aor", "contact", "received", "transport", "connection_id", "path", "expires_at", "q",
    "call_id", "cseq", "user_agent", "instance", "reg_id", "node", "updated_at", "nat",
)  # fmt: skip
_LIST = ", ".join(COLUMNS)
_VALUES = ", ".join("?" * len(COLUMNS))
_UPSERT = {
    "mysql": f"INSERT INTO locations ({_LIST}) VALUES ({_VALUES}) ON DUPLICATE KEY UPDATE "
    + ", ".join(f"{c} = VALUES({c})" for c in COLUMNS[2:]),
    "sqlite": f"INSERT INTO locations ({_LIST}) VALUES ({_VALUES})"
    " ON CONFLICT (aor, contact) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in COLUMNS[2:]),
}
_DELETE = "DELETE FROM locations WHERE aor = ? AND contact = ?"
_DELETE_UNCHANGED = _DELETE + " AND expires_at = ?"


class Removal(NamedTuple):
    """A row to delete; with ``expires_at``, only if the row still has that expiry."""

    aor: str
    contact: str
    expires_at: float | None = None


class LocationStore:
    """The bindings of every node, as stored; ``node`` names the one this process runs."""

    def __init__(self, db: Database, node: str) -> None:
        self.db = db
        self.node = node
        self._upsert = _UPSERT[db.dialect]

    async def load(self, now: float, aor: str | None = None) -> list[Binding]:
        """Every live binding (of ``aor``), whichever node took it (to fill the cache at
        start; for ``sipline registrations``)."""
        sql, params = f"SELECT {_LIST} FROM locations WHERE expires_at > ?", (now,)
        if aor is not None:
            sql, params = sql + " AND aor = ?", (now, aor)
        rows = await self.db.fetchall(sql + " ORDER BY aor, contact", params)
        return [binding_from_row(row) for row in rows]

    async def write(self, upserts: Sequence[Binding], removals: Sequence[Removal]) -> None:
        """One transaction: the upserts, then the removals (their keys must differ)."""
        plain = [(r.aor, r.contact) for r in removals if r.expires_at is None]
        guarded = [r for r in removals if r.expires_at is not None]
        async with self.db.transaction() as tx:
            if upserts:
                await tx.executemany(self._upsert, [row_of(b) for b in upserts])
            if plain:
                await tx.executemany(_DELETE, plain)
            if guarded:
                await tx.executemany(_DELETE_UNCHANGED, guarded)

    async def sweep(self, now: float) -> int:
        """Delete this node's expired rows, and orphans of any node; how many went.

        One statement each, with the expiry in the WHERE clause: a row refreshed
        after ``now`` was read (by this node or another) is not touched."""
        async with self.db.transaction() as tx:
            mine = await tx.execute(
                "DELETE FROM locations WHERE node = ? AND expires_at <= ?", (self.node, now)
            )
            orphans = await tx.execute(
                "DELETE FROM locations WHERE expires_at <= ?", (now - ORPHAN_GRACE,)
            )
        return mine + orphans


def row_of(b: Binding) -> tuple[object, ...]:
    source = b.source
    return (
        b.aor,
        b.contact,
        source.hostport if source else None,
        source.transport if source else "",
        None if source is None or source.connection is None else str(source.connection),
        ", ".join(b.path) or None,
        b.expires_at,
        b.q,
        b.call_id,
        b.cseq,
        b.user_agent,
        b.instance,
        b.reg_id,
        b.node,
        b.updated_at,
        int(b.nat),
    )


def binding_from_row(row: Row) -> Binding:
    """The binding of a stored row.

    The connection id is not restored: ids are per process, and after a
    restart (or for another node's binding) it would name an unrelated
    connection; the router falls back to the source address."""
    (aor, contact, received, transport, _connection, path, expires_at, q, call_id, cseq,
     user_agent, instance, reg_id, node, updated_at, nat) = row  # fmt: skip
    return Binding(
        aor=aor,
        contact=contact,
        expires_at=float(expires_at),
        q=1.0 if q is None else float(q),
        call_id=call_id,
        cseq=int(cseq),
        source=_address(transport, received),
        path=tuple(split_values(path)) if path else (),
        instance=instance,
        reg_id=None if reg_id is None else int(reg_id),
        user_agent=user_agent,
        node=node,
        updated_at=float(updated_at),
        nat=bool(nat),
    )


def _address(transport: str, received: str | None) -> Address | None:
    if not received or not transport:
        return None
    host, _, port = received.rpartition(":")
    return Address(transport, host.strip("[]"), int(port))
