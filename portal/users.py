"""Who may log in to the portal (``portal_users``, migration 009), with argon2id hashes.

Hashing costs tens of milliseconds of CPU on purpose, so it runs in a worker
thread: a login never stalls the event loop the portal shares with its streams.
"""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass
from typing import Literal

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from sipline.storage.database import Database, IntegrityError, InvalidValue, Row, StorageError

Role = Literal["admin", "customer"]
ROLES: tuple[Role, ...] = ("admin", "customer")
MAX_NAME = 64  # the widths of portal_users.username and .account
MIN_PASSWORD = 8
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@\-]{0,63}")
_COLUMNS = "id, username, role, account, created_at"

_hasher = PasswordHasher()
# Verified against when the user does not exist, so a wrong name costs what a wrong
# password costs and response times do not tell which names exist.
_DUMMY = _hasher.hash("not a password of anyone")


class DuplicateUser(IntegrityError):
    pass


class UnknownUser(StorageError):
    pass


@dataclass(frozen=True, slots=True)
class User:
    id: int
    username: str
    role: Role
    account: str | None  # the one account a customer sees; None for an admin
    created_at: float

    @property
    def admin(self) -> bool:
        return self.role == "admin"

    @classmethod
    def from_row(cls, row: Row) -> User:
        id_, username, role, account, created_at = row
        if role not in ROLES:
            raise StorageError(f"portal user {username}: unknown role {role!r}")
        return cls(int(id_), username, role, account, float(created_at))

    def to_json(self) -> dict[str, object]:
        return {"username": self.username, "role": self.role, "account": self.account}


def check_user(username: str, role: str, account: str | None) -> None:
    if not _NAME.fullmatch(username):
        raise InvalidValue(
            f"bad user name {username!r}: letters, digits, '_', '.', '@', '-' (at most {MAX_NAME})"
        )
    if role not in ROLES:
        raise InvalidValue(f"bad role {role!r}: expected admin or customer")
    if role == "customer" and not account:
        raise InvalidValue("a customer user needs an account (--account NAME)")
    if role == "admin" and account:
        raise InvalidValue("an admin user sees every account: give no --account")
    if account is not None and not 0 < len(account) <= MAX_NAME:
        raise InvalidValue(f"an account name has 1 to {MAX_NAME} characters")


def check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise InvalidValue(f"a portal password has at least {MIN_PASSWORD} characters")


class Users:
    """The portal_users table."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def add(self, username: str, password: str, role: str, account: str | None) -> User:
        check_user(username, role, account)
        check_password(password)
        hashed = await asyncio.to_thread(_hasher.hash, password)
        try:
            await self._db.execute(
                "INSERT INTO portal_users (username, password_hash, role, account, created_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (username, hashed, role, account, time.time()),
            )
        except IntegrityError:
            raise DuplicateUser(f"portal user {username} already exists") from None
        user = await self.get(username)
        assert user is not None
        return user

    async def set_password(self, username: str, password: str) -> None:
        check_password(password)
        hashed = await asyncio.to_thread(_hasher.hash, password)
        changed = await self._db.execute(
            "UPDATE portal_users SET password_hash = ? WHERE username = ?", (hashed, username)
        )
        if not changed:
            raise UnknownUser(f"no portal user {username}")

    async def remove(self, username: str) -> None:
        if not await self._db.execute("DELETE FROM portal_users WHERE username = ?", (username,)):
            raise UnknownUser(f"no portal user {username}")

    async def get(self, username: str) -> User | None:
        row = await self._db.fetchone(
            f"SELECT {_COLUMNS} FROM portal_users WHERE username = ?", (username,)
        )
        return User.from_row(row) if row else None

    async def by_id(self, id_: int) -> User | None:
        row = await self._db.fetchone(f"SELECT {_COLUMNS} FROM portal_users WHERE id = ?", (id_,))
        return User.from_row(row) if row else None

    async def list(self) -> list[User]:
        rows = await self._db.fetchall(f"SELECT {_COLUMNS} FROM portal_users ORDER BY username")
        return [User.from_row(row) for row in rows]

    async def verify(self, username: str, password: str) -> User | None:
        """The user whose name and password these are, else None (same cost either way)."""
        row = await self._db.fetchone(
            f"SELECT {_COLUMNS}, password_hash FROM portal_users WHERE username = ?",
            (username[: MAX_NAME + 1],),
        )
        hashed = row[-1] if row else _DUMMY
        ok = await asyncio.to_thread(_verify, hashed, password)
        return User.from_row(row[:-1]) if row and ok else None


def _verify(hashed: str, password: str) -> bool:
    try:
        return _hasher.verify(hashed, password)
    except (VerificationError, InvalidHashError):
        return False
