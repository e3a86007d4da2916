"""The locations table (sipline/storage/migrations 001, 002, 007): bindings as rows and back.

Writes are idempotent upserts on the (aor, contact) key, so a binding written
after a sweep deleted its old row simply comes back. Every removal that is not
an explicit unregistration carries a condition on ``expires_at``, so it cannot
remove a binding that was refreshed after the decision to remove was taken.

Each write is one batch with the next version (``location_version``, bumped
in the batch's transaction: its row lock orders the commits, so the versions
committed have no holes). A removal leaves a tombstone (``expires_at`` 0, the
batch's version) for ``TOMBSTONE_KEEP`` seconds: ``changes(since)`` tells other
proxies what was written and removed after the version they hold.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import NamedTuple

from proxy.location import Binding
from sipline.sip.address import Address
from sipline.sip.headers import split_values
from sipline.storage import Database, Row

# Bindings of a node that stopped sweeping (gone for good) are deleted by any
# other node once they have been expired this long.
ORPHAN_GRACE = 3600.0
# Tombstones of removed bindings are kept this long: a proxy whose last
# catch-up is older (proxy/feed.py's RELOAD_AFTER is half of it) reloads everything.
TOMBSTONE_KEEP = 300.0
# Rows read by one catch-up query at most (a batch holds far fewer, commit_rows).
CHANGES_PAGE = 5000

COLUMNS = (
    "aor", "contact", "received", "transport", "connection_id", "path", "expires_at", "q",
    "call_id", "cseq", "user_agent", "instance", "reg_id", "node", "updated_at", "nat",
    "proxy", "version",
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
_BURY = "UPDATE locations SET expires_at = 0, version = ?, updated_at = ? WHERE aor = ? AND contact = ?"
_BURY_UNCHANGED = _BURY + " AND expires_at = ?"
_BUMP = "UPDATE location_version SET version = version + 1 WHERE id = 1"
_VERSION = "SELECT version FROM location_version WHERE id = 1"
_CHANGES = f"SELECT {_LIST} FROM locations WHERE version > ? ORDER BY version LIMIT {CHANGES_PAGE}"


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
        start; for ``sipline registrations``).

        Read ``version()`` before: every batch up to it is in what this returns."""
        sql, params = f"SELECT {_LIST} FROM locations WHERE expires_at > ?", (now,)
        if aor is not None:
            sql, params = sql + " AND aor = ?", (now, aor)
        rows = await self.db.fetchall(sql + " ORDER BY aor, contact", params)
        return [binding_from_row(row) for row in rows]

    async def version(self) -> int:
        """The version of the last batch committed."""
        row = await self.db.fetchone(_VERSION)
        return 0 if row is None else int(row[0])

    async def changes(self, since: int) -> list[Binding]:
        """The rows written by batches after ``since``, tombstones included, in
        version order; at most ``CHANGES_PAGE`` (ask again from the last version
        but one when that many came)."""
        return [binding_from_row(row) for row in await self.db.fetchall(_CHANGES, (since,))]

    async def write(
        self, upserts: Sequence[Binding], removals: Sequence[Removal], now: float = 0.0
    ) -> int:
        """One transaction, one version: the upserts, then the removals (their keys
        must differ; a removal leaves a tombstone written at ``now``). The upserts
        take the version, which is returned."""
        plain = [(r.aor, r.contact) for r in removals if r.expires_at is None]
        guarded = [(r.aor, r.contact, r.expires_at) for r in removals if r.expires_at is not None]
        async with self.db.transaction() as tx:
            await tx.execute(_BUMP)
            row = await tx.fetchone(_VERSION)
            version = int(row[0]) if row is not None else 0
            for binding in upserts:
                binding.version = version
            if upserts:
                await tx.executemany(self._upsert, [row_of(b) for b in upserts])
            if plain:
                await tx.executemany(_BURY, [(version, now, *key) for key in plain])
            if guarded:
                await tx.executemany(_BURY_UNCHANGED, [(version, now, *key) for key in guarded])
        return version

    async def sweep(self, now: float, adopted: Iterable[str] = ()) -> int:
        """Delete the expired rows of this node and of the ``adopted`` ones (dead
        nodes whose bindings this one took over), orphans of any node and old
        tombstones; how many went.

        One statement each, with the expiry in the WHERE clause: a row refreshed
        after ``now`` was read (by this node or another) is not touched."""
        nodes = [self.node, *adopted]
        marks = ", ".join("?" * len(nodes))
        async with self.db.transaction() as tx:
            mine = await tx.execute(
                f"DELETE FROM locations WHERE node IN ({marks}) AND expires_at <= ?"
                " AND expires_at > 0",
                (*nodes, now),
            )
            orphans = await tx.execute(
                "DELETE FROM locations WHERE expires_at <= ? AND expires_at > 0",
                (now - ORPHAN_GRACE,),
            )
            buried = await tx.execute(
                "DELETE FROM locations WHERE expires_at = 0 AND updated_at <= ?",
                (now - TOMBSTONE_KEEP,),
            )
        return mine + orphans + buried


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
        b.proxy,
        b.version,
    )


def binding_from_row(row: Row) -> Binding:
    """The binding of a stored row.

    The connection id is not restored: ids are per process, and after a
    restart (or for another node's binding) it would name an unrelated
    connection; the router falls back to the source address."""
    (aor, contact, received, transport, _connection, path, expires_at, q, call_id, cseq,
     user_agent, instance, reg_id, node, updated_at, nat, proxy, version) = row  # fmt: skip
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
        proxy=proxy,
        version=int(version),
    )


def _address(transport: str, received: str | None) -> Address | None:
    if not received or not transport:
        return None
    host, _, port = received.rpartition(":")
    return Address(transport, host.strip("[]"), int(port))
