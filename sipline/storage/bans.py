"""Bans shared by every SIP node and ``sipline ban``: in Redis when ``[redis] url``
is set, else in the database.

Redis: one key per ban (``sipline:ban:<address>``, expiring with the ban, so a
node that starts reads those in force) and a message on ``sipline:bans`` for
each change, which every node applies at once. Database (migration 006): the
``bans`` table, and ``ban_version`` bumped with every change, so nodes re-read
the table only when it moved (``[limits] ban_poll``); nodes write the bans
they make in batches, never one statement per message.

An address is what the guard counts by (``sipline.net.guard.source_key``):
an IPv4 address, or an IPv6 prefix. A ban a node makes never shortens one
already stored (an operator's permanent ban stays permanent); an operator's
replaces it.
"""

from __future__ import annotations

import ipaddress
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import orjson

from sipline.storage.database import Database, InvalidValue, Row
from sipline.storage.live import open_redis

MANUAL = "manual"
OPERATOR = "operator"
KEY_PREFIX = "sipline:ban:"
CHANNEL = "sipline:bans"
_CHUNK = 500  # addresses per IN (...) list
_COLUMNS = "address, ends_at, reason, origin, created_at"


@dataclass(frozen=True, slots=True)
class Ban:
    address: str
    ends_at: float | None  # epoch seconds; None: until removed
    reason: str  # flood | auth | manual
    origin: str  # the node that made it, or "operator"
    created_at: float

    def outlasts(self, other: Ban) -> bool:
        """This ban ends no earlier than ``other``."""
        if self.ends_at is None:
            return True
        return other.ends_at is not None and self.ends_at >= other.ends_at

    @classmethod
    def from_row(cls, row: Row) -> Ban:
        address, ends_at, reason, origin, created_at = row
        ends = None if ends_at is None else float(ends_at)
        return cls(address, ends, reason, origin, float(created_at))


def ban_address(text: str, ipv6_prefix: int) -> str:
    """The address a ban of ``text`` (an IP address, or an IPv6 prefix of
    ``ipv6_prefix`` bits) is stored under; InvalidValue for anything else."""
    try:
        if "/" in text:
            network = ipaddress.ip_network(text.strip(), strict=False)
            if network.version == 6 and network.prefixlen == ipv6_prefix:
                return str(network)
            if network.version == 4 and network.prefixlen == 32:
                return str(network.network_address)
            raise ValueError
        address = ipaddress.ip_address(text.strip())
    except ValueError:
        raise InvalidValue(
            f"bad address {text!r}: expected an IPv4 or IPv6 address"
            f" (or an IPv6 prefix of /{ipv6_prefix}, limits.ipv6_prefix)"
        ) from None
    if address.version == 6 and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    if address.version == 4:
        return str(address)
    return str(ipaddress.IPv6Network((address, ipv6_prefix), strict=False))


class BanStore(ABC):
    """Where bans are shared; ``add`` returns the bans it stored."""

    @abstractmethod
    async def add(self, bans: Sequence[Ban], *, replace: bool = False) -> list[Ban]:
        """Store ``bans``; an address already banned for at least as long is kept
        as it is unless ``replace`` (an operator's)."""

    @abstractmethod
    async def remove(self, address: str) -> bool:
        """Lift the ban of ``address``; False if there was none."""

    @abstractmethod
    async def active(self, now: float) -> list[Ban]:
        """Every ban in force at ``now`` (epoch seconds), oldest first."""

    @abstractmethod
    async def close(self) -> None:
        """Release what the store holds (not a database it was given)."""


class DatabaseBans(BanStore):
    def __init__(self, db: Database) -> None:
        self.db = db

    async def close(self) -> None:
        pass  # the database is its owner's to close

    async def add(self, bans: Sequence[Ban], *, replace: bool = False) -> list[Ban]:
        latest = {ban.address: ban for ban in bans}
        async with self.db.transaction() as tx:
            stored: dict[str, Ban] = {}
            addresses = list(latest)
            for at in range(0, len(addresses), _CHUNK):
                chunk = addresses[at : at + _CHUNK]
                marks = ", ".join("?" * len(chunk))
                rows = await tx.fetchall(
                    f"SELECT {_COLUMNS} FROM bans WHERE address IN ({marks})", chunk
                )
                stored.update((row[0], Ban.from_row(row)) for row in rows)
            new = [
                ban
                for ban in latest.values()
                if replace or ban.address not in stored or not stored[ban.address].outlasts(ban)
            ]
            if not new:
                return []
            await tx.executemany(
                "DELETE FROM bans WHERE address = ?", [(ban.address,) for ban in new]
            )
            await tx.executemany(
                f"INSERT INTO bans ({_COLUMNS}) VALUES (?, ?, ?, ?, ?)",
                [(b.address, b.ends_at, b.reason, b.origin, b.created_at) for b in new],
            )
            await _bump(tx)
        return new

    async def remove(self, address: str) -> bool:
        async with self.db.transaction() as tx:
            removed = await tx.execute("DELETE FROM bans WHERE address = ?", (address,))
            if removed:
                await _bump(tx)
        return removed > 0

    async def active(self, now: float) -> list[Ban]:
        rows = await self.db.fetchall(
            f"SELECT {_COLUMNS} FROM bans WHERE ends_at IS NULL OR ends_at > ?"
            " ORDER BY created_at, address",
            (now,),
        )
        return [Ban.from_row(row) for row in rows]

    async def version(self) -> int:
        row = await self.db.fetchone("SELECT version FROM ban_version WHERE id = 1")
        return int(row[0]) if row else 0

    async def purge(self, now: float) -> int:
        """Delete the bans that have ended (no node needs telling)."""
        return await self.db.execute(
            "DELETE FROM bans WHERE ends_at IS NOT NULL AND ends_at <= ?", (now,)
        )


async def _bump(tx: Any) -> None:
    await tx.execute("UPDATE ban_version SET version = version + 1 WHERE id = 1")


class RedisBans(BanStore):
    def __init__(self, url: str) -> None:
        self.redis = open_redis(url)

    async def add(self, bans: Sequence[Ban], *, replace: bool = False) -> list[Ban]:
        latest = list({ban.address: ban for ban in bans}.values())
        async with self.redis.pipeline(transaction=False) as pipe:
            for ban in latest:
                ends = None if ban.ends_at is None else int(ban.ends_at * 1000)
                pipe.set(KEY_PREFIX + ban.address, _encode(ban), pxat=ends, nx=not replace)
            stored = [ban for ban, done in zip(latest, await pipe.execute(), strict=True) if done]
        if stored:
            async with self.redis.pipeline(transaction=False) as pipe:
                for ban in stored:
                    pipe.publish(CHANNEL, orjson.dumps({"ban": asdict(ban)}))
                await pipe.execute()
        return stored

    async def remove(self, address: str) -> bool:
        removed = await self.redis.delete(KEY_PREFIX + address)
        if removed:
            await self.redis.publish(CHANNEL, orjson.dumps({"lift": address}))
        return removed > 0

    async def active(self, now: float) -> list[Ban]:
        keys = [key async for key in self.redis.scan_iter(match=KEY_PREFIX + "*", count=1000)]
        bans = []
        for at in range(0, len(keys), _CHUNK):
            for value in await self.redis.mget(keys[at : at + _CHUNK]):
                if value is not None:
                    ban = _decode(value)
                    if ban.ends_at is None or ban.ends_at > now:
                        bans.append(ban)
        return sorted(bans, key=lambda ban: (ban.created_at, ban.address))

    async def subscribe(self) -> BanChanges:
        """Listen to every change made from now on (the subscription is confirmed)."""
        pubsub = self.redis.pubsub()
        try:
            await pubsub.subscribe(CHANNEL)
            while (await pubsub.get_message(timeout=1.0) or {}).get("type") != "subscribe":
                pass
        except BaseException:
            await pubsub.aclose()
            raise
        return BanChanges(pubsub)

    async def close(self) -> None:
        await self.redis.aclose()


class BanChanges:
    """A subscription to ``sipline:bans``."""

    def __init__(self, pubsub: Any) -> None:
        self.pubsub = pubsub

    async def next(self) -> Ban | str:
        """The next change: a Ban, or the address lifted; raises when Redis fails."""
        while True:
            message = await self.pubsub.get_message(timeout=1.0)
            if message is not None and message["type"] == "message":
                change = orjson.loads(message["data"])
                return Ban(**change["ban"]) if "ban" in change else str(change["lift"])

    async def close(self) -> None:
        await self.pubsub.aclose()


def _encode(ban: Ban) -> bytes:
    return orjson.dumps(asdict(ban))


def _decode(value: bytes) -> Ban:
    return Ban(**orjson.loads(value))


def ban_store(redis_url: str | None, db: Database | None) -> BanStore | None:
    """Redis when configured, else the database if there is one, else None (in process)."""
    if redis_url:
        return RedisBans(redis_url)
    return DatabaseBans(db) if db is not None else None
