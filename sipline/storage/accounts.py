"""Accounts: the accounts table (licences, grace state) and the audit of calls over
their licence, as ``sipline account``, the B2BUA's licence check (b2bua.licences)
and the portal use them. The rules of the grace period are in ``sipline.grace``.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass

from sipline.storage.database import Database, IntegrityError, InvalidValue, Row, StorageError

MAX_NAME = 64  # the width of accounts.name (001_initial.sql)
_COLUMNS = "name, licence, grace_hours, grace_own, grace_started_at, created_at"


class UnknownAccount(StorageError):
    pass


@dataclass(frozen=True, slots=True)
class Account:
    name: str
    licence: int  # concurrent calls
    grace_hours: int | None  # None: the config's b2bua.grace_hours
    grace_started_at: float | None
    created_at: float

    @classmethod
    def from_row(cls, row: Row) -> Account:
        name, licence, grace_hours, grace_own, started, created = row
        return cls(
            name,
            int(licence),
            int(grace_hours) if grace_own else None,
            None if started is None else float(started),
            float(created),
        )


@dataclass(frozen=True, slots=True)
class AuditRow:
    """A call over its account's licence (the ``audit`` table)."""

    account: str
    at: float
    count: int  # the account's concurrent calls with this one
    licence: int
    allowed: bool  # went ahead in the grace period
    call_id: str | None = None
    node: str = ""


def check_name(name: str) -> str:
    if not 0 < len(name) <= MAX_NAME or name != name.strip():
        raise InvalidValue(
            f"bad account name {name!r}: 1 to {MAX_NAME} characters, no spaces at the ends"
        )
    return name


class KEEP:
    """``Accounts.set(grace_hours=KEEP)``: leave the account's grace hours as they are."""


class Accounts:
    """The accounts and audit tables."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def set(
        self,
        name: str,
        licence: int | None = None,
        *,
        grace_hours: int | None | type[KEEP] = KEEP,
        keep_grace: bool = False,
        now: float | None = None,
    ) -> Account:
        """Create or update ``name``. ``licence`` None keeps the current one (an account
        being created needs one); ``grace_hours`` None: the config's ``b2bua.grace_hours``,
        ``KEEP``: as it is (the config's for a new account).
        The grace period starts afresh (``grace_started_at`` cleared) unless ``keep_grace``."""
        check_name(name)
        if licence is not None and licence < 0:
            raise InvalidValue("a licence is a number of calls, 0 or more")
        if isinstance(grace_hours, int) and grace_hours < 0:
            raise InvalidValue("grace hours are 0 or more")
        now = time.time() if now is None else now
        sets, params = [], []
        if licence is not None:
            sets.append("licence = ?")
            params.append(licence)
        if grace_hours is not KEEP:
            sets.append("grace_hours = ?, grace_own = ?")
            params += [grace_hours or 0, int(grace_hours is not None)]
        if not keep_grace:
            sets.append("grace_started_at = NULL")
        for _ in range(2):  # a concurrent set may create the row between our UPDATE and INSERT
            try:
                async with self._db.transaction() as tx:
                    row = await tx.fetchone(
                        f"SELECT {_COLUMNS} FROM accounts WHERE name = ?", (name,)
                    )
                    if row is not None:
                        if sets:
                            await tx.execute(
                                f"UPDATE accounts SET {', '.join(sets)} WHERE name = ?",
                                (*params, name),
                            )
                    else:
                        if licence is None:
                            raise InvalidValue(
                                f"account {name} does not exist: give it a --licence"
                            )
                        hours = grace_hours if isinstance(grace_hours, int) else None
                        await tx.execute(
                            "INSERT INTO accounts"
                            " (name, licence, grace_hours, grace_own, grace_started_at, created_at)"
                            " VALUES (?, ?, ?, ?, NULL, ?)",
                            (name, licence, hours or 0, int(hours is not None), now),
                        )
                    row = await tx.fetchone(
                        f"SELECT {_COLUMNS} FROM accounts WHERE name = ?", (name,)
                    )
                break
            except IntegrityError:
                continue
        assert row is not None
        return Account.from_row(row)

    async def get(self, name: str) -> Account | None:
        row = await self._db.fetchone(f"SELECT {_COLUMNS} FROM accounts WHERE name = ?", (name,))
        return Account.from_row(row) if row else None

    async def list(self) -> list[Account]:
        rows = await self._db.fetchall(f"SELECT {_COLUMNS} FROM accounts ORDER BY name")
        return [Account.from_row(row) for row in rows]

    async def remove(self, name: str) -> None:
        if not await self._db.execute("DELETE FROM accounts WHERE name = ?", (name,)):
            raise UnknownAccount(f"no account {name}")

    async def start_grace(self, name: str, at: float) -> float | None:
        """Record ``at`` as the start of ``name``'s grace period unless one is recorded
        already (another node was first); the recorded start (None: no such account)."""
        async with self._db.transaction() as tx:
            await tx.execute(
                "UPDATE accounts SET grace_started_at = ? WHERE name = ? AND grace_started_at IS NULL",
                (at, name),
            )
            row = await tx.fetchone("SELECT grace_started_at FROM accounts WHERE name = ?", (name,))
        return None if row is None or row[0] is None else float(row[0])

    async def add_audit(self, rows: Iterable[AuditRow]) -> int:
        return await self._db.executemany(
            "INSERT INTO audit (account, at, count, licence, allowed, call_id, node)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                (r.account, r.at, r.count, r.licence, int(r.allowed), r.call_id, r.node)
                for r in rows
            ],
        )

    async def audit(self, name: str | None = None, limit: int = 100) -> list[AuditRow]:
        """The latest over-use, newest first (of ``name``, or of every account)."""
        where, params = ("WHERE account = ? ", [name]) if name is not None else ("", [])
        rows = await self._db.fetchall(
            "SELECT account, at, count, licence, allowed, call_id, node FROM audit "
            f"{where}ORDER BY at DESC, id DESC LIMIT ?",
            (*params, limit),
        )
        return [
            AuditRow(a, float(at), int(n), int(lic), bool(ok), cid, node)
            for a, at, n, lic, ok, cid, node in rows
        ]
