"""Subscribers: who may register and call, with their digest HA1 (never a password).

Shared by every role that authenticates or bills (proxy, b2bua, acr). The HA1
realm is the subscriber's domain, so a phone configured with user ``alice``,
domain ``example.com`` and its password answers our challenges directly.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field

from sipline.sip.auth import MD5, SHA256, compute_ha1
from sipline.storage.database import Database, IntegrityError, InvalidValue, Row, StorageError

# RFC 3261 section 25.1: user = unreserved / escaped / user-unreserved characters.
_USER = re.compile(r"[A-Za-z0-9\-_.!~*'()&=+$,;?/%]+")
_HOSTNAME = re.compile(
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?\.)*[A-Za-z][A-Za-z0-9\-]*[A-Za-z0-9]"
)
_IPV4 = re.compile(r"(?:\d{1,3}\.){3}\d{1,3}")
MAX_USERNAME = 128  # the widths of the columns (001_initial.sql)
MAX_ACCOUNT = 64
_COLUMNS = "id, username, domain, ha1_md5, ha1_sha256, account, created_at, aliases"
MAX_ALIASES = 1024  # the width of subscribers.aliases (005_subscriber_aliases.sql)


class InvalidAor(InvalidValue):
    """Not an address of record of the form ``user@domain`` (``sip:`` optional)."""


class DuplicateSubscriber(StorageError):
    pass


class UnknownSubscriber(StorageError):
    pass


@dataclass(frozen=True, slots=True)
class Subscriber:
    id: int
    username: str
    domain: str
    ha1_md5: str = field(repr=False)
    ha1_sha256: str = field(repr=False)
    account: str | None
    created_at: float
    # What else its From may say (proxy.identity): user parts in its domain,
    # user@domain, telephone numbers.
    aliases: frozenset[str] = frozenset()

    @property
    def aor(self) -> str:
        return f"{self.username}@{self.domain}"

    def ha1(self, algorithm: str) -> str | None:
        """The HA1 to verify credentials of ``algorithm`` with; None for one we do not store."""
        return {MD5: self.ha1_md5, SHA256: self.ha1_sha256}.get(algorithm.upper())

    @classmethod
    def from_row(cls, row: Row) -> Subscriber:
        id_, username, domain, ha1_md5, ha1_sha256, account, created_at, aliases = row
        return cls(
            int(id_), username, domain, ha1_md5, ha1_sha256, account, float(created_at),
            frozenset(aliases.split()),
        )  # fmt: skip


def parse_aor(text: str) -> tuple[str, str]:
    """``(username, domain)`` of ``alice@example.com`` or ``sip:alice@example.com``.

    The domain is lower-cased (host names compare case-insensitively); the
    username is kept as given (SIP user parts are case-sensitive).
    """
    address = text.strip()
    if address[:4].lower() == "sip:":
        address = address[4:]
    username, at, domain = address.rpartition("@")
    if not at or not _is_user(username) or not _is_domain(domain):
        raise InvalidAor(f"bad AOR {text!r}: expected user@domain, such as alice@example.com")
    return username, domain.lower()


def check_alias(alias: str) -> str:
    """An alias as ``subscribers.aliases`` keeps it: a user part (a number for a
    tel: From too) or user@domain."""
    user, at, domain = alias.rpartition("@")
    if not at:
        user, domain = alias, "example.com"
    if not _is_user(user) or not _is_domain(domain.lower()) or domain != domain.lower():
        raise InvalidValue(
            f"bad alias {alias!r}: expected a user part (such as 15550100) or user@domain"
            " (domain in lower case)"
        )
    return alias


def _is_user(username: str) -> bool:
    return len(username) <= MAX_USERNAME and _USER.fullmatch(username) is not None


def _is_domain(domain: str) -> bool:
    if _IPV4.fullmatch(domain):
        return all(int(part) <= 255 for part in domain.split("."))
    return len(domain) <= 253 and _HOSTNAME.fullmatch(domain) is not None


class Subscribers:
    """The subscribers table."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def add(self, aor: str, password: str, account: str | None = None) -> Subscriber:
        """Provision ``aor`` with the HA1s of ``password``; DuplicateSubscriber if it exists."""
        username, domain = parse_aor(aor)
        if not password:
            raise InvalidValue("the password must not be empty")
        if account is not None and not 0 < len(account) <= MAX_ACCOUNT:
            raise InvalidValue(f"an account name has 1 to {MAX_ACCOUNT} characters")
        row = (
            username,
            domain,
            compute_ha1(username, domain, password, MD5),
            compute_ha1(username, domain, password, SHA256),
            account,
            time.time(),
        )
        try:
            async with self._db.transaction() as tx:
                await tx.execute(
                    "INSERT INTO subscribers"
                    " (username, domain, ha1_md5, ha1_sha256, account, created_at)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    row,
                )
                added = await tx.fetchone(
                    f"SELECT {_COLUMNS} FROM subscribers WHERE username = ? AND domain = ?",
                    (username, domain),
                )
        except IntegrityError:
            raise DuplicateSubscriber(f"subscriber {username}@{domain} already exists") from None
        assert added is not None
        return Subscriber.from_row(added)

    async def set_aliases(self, aor: str, aliases: list[str]) -> Subscriber:
        """Replace ``aor``'s aliases (``[]``: none); UnknownSubscriber if there is no such one."""
        username, domain = parse_aor(aor)
        for alias in aliases:
            check_alias(alias)
        text = " ".join(dict.fromkeys(aliases))
        if len(text) > MAX_ALIASES:
            raise InvalidValue(f"the aliases take {len(text)} characters, at most {MAX_ALIASES}")
        return await self._update(username, domain, "aliases = ?", (text,))

    async def remove(self, aor: str) -> None:
        """Delete ``aor``; UnknownSubscriber if there is no such subscriber."""
        username, domain = parse_aor(aor)
        deleted = await self._db.execute(
            "DELETE FROM subscribers WHERE username = ? AND domain = ?", (username, domain)
        )
        if not deleted:
            raise UnknownSubscriber(f"no subscriber {username}@{domain}")

    async def get(self, username: str, domain: str) -> Subscriber | None:
        row = await self._db.fetchone(
            f"SELECT {_COLUMNS} FROM subscribers WHERE username = ? AND domain = ?",
            (username, domain.lower()),
        )
        return Subscriber.from_row(row) if row else None

    async def set_password(self, aor: str, password: str) -> Subscriber:
        """Replace ``aor``'s HA1s with those of ``password`` (the password is not kept)."""
        username, domain = parse_aor(aor)
        if not password:
            raise InvalidValue("the password must not be empty")
        ha1s = (compute_ha1(username, domain, password, MD5),
                compute_ha1(username, domain, password, SHA256))  # fmt: skip
        return await self._update(username, domain, "ha1_md5 = ?, ha1_sha256 = ?", ha1s)

    async def _update(
        self, username: str, domain: str, assignments: str, values: tuple[str, ...]
    ) -> Subscriber:
        """Set ``assignments`` on one subscriber; it as it now is (UnknownSubscriber: none)."""
        async with self._db.transaction() as tx:
            await tx.execute(
                f"UPDATE subscribers SET {assignments} WHERE username = ? AND domain = ?",
                (*values, username, domain),
            )
            row = await tx.fetchone(
                f"SELECT {_COLUMNS} FROM subscribers WHERE username = ? AND domain = ?",
                (username, domain),
            )
        if row is None:
            raise UnknownSubscriber(f"no subscriber {username}@{domain}")
        return Subscriber.from_row(row)

    async def list(
        self, *, account: str | None = None, search: str = "", limit: int | None = None
    ) -> list[Subscriber]:
        """Subscribers by domain then username: every one, or those of ``account``, whose
        user@domain contains ``search``; at most ``limit``."""
        clauses, params = [], []
        if account is not None:
            clauses.append("account = ?")
            params.append(account)
        if search:
            escaped = search.replace("!", "!!").replace("%", "!%").replace("_", "!_")
            aor = (
                "username || '@' || domain" if self._db.dialect == "sqlite"
                else "CONCAT(username, '@', domain)"
            )  # fmt: skip
            clauses.append(f"{aor} LIKE ? ESCAPE '!'")
            params.append(f"%{escaped}%")
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        sql = f"SELECT {_COLUMNS} FROM subscribers{where} ORDER BY domain, username"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        rows = await self._db.fetchall(sql, params)
        return [Subscriber.from_row(row) for row in rows]
