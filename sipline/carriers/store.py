"""The ACR's system of record: carriers, gateways, rates, routing profiles, DIDs, CDRs.

Every write to what routing depends on (carriers, gateways, rates, profiles,
DIDs) bumps ``acr_version`` in the same transaction, so a node polls
``version()`` and reloads only when it moved. CDRs are written by
``acr.cdrs.CdrWriter``; this module reads them back.
"""

from __future__ import annotations

import ipaddress
import re
import time
from typing import Any

import orjson

from sipline.carriers.model import FINAL_CODES, Carrier, Cdr, Did, Gateway, Rate, RoutingProfile
from sipline.storage.database import (
    Database,
    IntegrityError,
    InvalidValue,
    Queries,
    Row,
    StorageError,
)

MAX_NAME = 64  # the widths of the columns (003_acr.sql)
MAX_PREFIX = 32
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}")
_HOSTNAME = re.compile(
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?\.)*[A-Za-z][A-Za-z0-9\-]*[A-Za-z0-9]"
)
_DIGITS = re.compile(r"\d{1,32}")
TRANSPORTS = ("udp", "tcp", "tls")
PACKED_ROWS = 20_000  # rates per packed text (AcrStore.rates on MySQL): at most ~3 MB each
PACKED_MAX_BYTES = 16 << 20
_EFFECTIVE = (
    " WHERE (effective_from IS NULL OR effective_from <= ?)"
    " AND (effective_to IS NULL OR effective_to > ?)"
)

RATE_COLUMNS = (
    "carrier, prefix, rate, connect_fee, first_increment, next_increment,"
    " effective_from, effective_to"
)
CDR_COLUMNS = (
    "call_id, account, caller, callee, prefix, carrier, gateway, rate, connect_fee,"
    " first_increment, next_increment, started_at, answered_at, ended_at, billed_seconds,"
    " cost, final_code, node, extra"
)


class DuplicateCarrier(IntegrityError):
    """A carrier of that name, or a gateway at that address, exists already."""


class UnknownCarrier(StorageError):
    pass


class DuplicateDid(IntegrityError):
    pass


# -- values ------------------------------------------------------------------------------


def check_name(name: str) -> str:
    """A carrier name: letters, digits, ``_ . -``, at most 64, starting with a letter or digit."""
    if not _NAME.fullmatch(name):
        raise InvalidValue(
            f"bad carrier name {name!r}: expected letters, digits, '_', '.', '-' (at most 64)"
        )
    return name


def parse_number(text: str) -> str:
    """A dialled number or prefix as digits only: ``+44 20`` gives ``4420``."""
    digits = text.strip().removeprefix("+").replace(" ", "")
    if not _DIGITS.fullmatch(digits):
        raise InvalidValue(f"bad number {text!r}: expected up to 32 digits, '+' allowed in front")
    return digits


def parse_host_port(text: str, default_port: int = 5060) -> tuple[str, int]:
    """``(host, port)`` of ``HOST:PORT``, ``HOST`` or ``[v6]:PORT``; the host an IP or a name."""
    host, port = text.strip(), default_port
    if host.startswith("["):
        inner, bracket, rest = host[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise InvalidValue(f"bad address {text!r}: expected HOST:PORT")
        host, port_text = inner, rest[1:]
        if rest:
            port = _port(text, port_text)
    elif host.count(":") == 1:
        host, port_text = host.split(":")
        port = _port(text, port_text)
    if not _is_host(host):
        raise InvalidValue(f"bad address {text!r}: expected HOST:PORT, such as 192.0.2.1:5060")
    return host, port


def _port(text: str, port: str) -> int:
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise InvalidValue(f"bad address {text!r}: the port must be 1-65535")
    return int(port)


def _is_host(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return len(host) <= 253 and _HOSTNAME.fullmatch(host) is not None


def check_carrier(carrier: Carrier) -> None:
    check_name(carrier.name)
    if not carrier.gateways:
        raise InvalidValue(f"carrier {carrier.name} needs at least one gateway")
    for limit, value in (("capacity", carrier.capacity), ("cps", carrier.cps)):
        if value is not None and value < 1:
            raise InvalidValue(f"bad {limit} {value} for {carrier.name}: expected 1 or more")
    for gateway in carrier.gateways:
        if not _is_host(gateway.host) or not 0 < gateway.port < 65536:
            raise InvalidValue(f"bad gateway {gateway.address!r} for {carrier.name}")
        if gateway.transport not in TRANSPORTS:
            raise InvalidValue(
                f"bad transport {gateway.transport!r} for {gateway.address}: expected udp, tcp or tls"
            )
        if gateway.weight < 1:
            raise InvalidValue(f"bad weight {gateway.weight} for {gateway.address}: expected >= 1")


# -- rows --------------------------------------------------------------------------------


def rate_from_row(row: Row) -> Rate:
    carrier, prefix, rate, fee, first, step, start, end = row
    return Rate(
        carrier,
        prefix,
        float(rate),
        float(fee),
        int(first),
        int(step),
        None if start is None else float(start),
        None if end is None else float(end),
    )


def cdr_row(cdr: Cdr) -> tuple[Any, ...]:
    """The cdrs row of ``cdr``, in CDR_COLUMNS order."""
    return (
        cdr.call_id,
        cdr.account,
        cdr.caller,
        cdr.callee,
        cdr.prefix,
        cdr.carrier,
        cdr.gateway,
        cdr.rate,
        cdr.connect_fee,
        cdr.first_increment,
        cdr.next_increment,
        cdr.start,
        cdr.answer,
        cdr.end,
        cdr.billed_seconds,
        cdr.cost,
        cdr.final_code,
        cdr.node,
        orjson.dumps(cdr.extra).decode() if cdr.extra else None,
    )


def cdr_from_row(row: Row) -> Cdr:
    (call_id, account, caller, callee, prefix, carrier, gateway, rate, fee, first, step,
     start, answer, end, billed, cost, code, node, extra) = row  # fmt: skip
    return Cdr(
        call_id=call_id,
        account=account,
        caller=caller,
        callee=callee,
        prefix=prefix,
        carrier=carrier,
        gateway=gateway,
        rate=float(rate),
        start=float(start),
        end=float(end),
        final_code=int(code),
        node=node,
        answer=None if answer is None else float(answer),
        connect_fee=float(fee),
        first_increment=int(first),
        next_increment=int(step),
        billed_seconds=int(billed),
        cost=float(cost),
        extra=orjson.loads(extra) if extra else {},
    )


async def bump_version(tx: Queries) -> None:
    """Tell the nodes that what routing depends on changed (inside the change's transaction)."""
    await tx.execute("UPDATE acr_version SET version = version + 1 WHERE id = 1")


# -- the store ---------------------------------------------------------------------------


class AcrStore:
    """The ACR's tables (003_acr.sql)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def version(self) -> int:
        row = await self.db.fetchone("SELECT version FROM acr_version WHERE id = 1")
        return int(row[0]) if row else 0

    # carriers

    async def add_carrier(self, carrier: Carrier) -> None:
        """Store ``carrier`` and its gateways; DuplicateCarrier if the name or an address is taken."""
        check_carrier(carrier)
        try:
            async with self.db.transaction() as tx:
                if await tx.fetchone("SELECT 1 FROM carriers WHERE name = ?", (carrier.name,)):
                    raise DuplicateCarrier(f"carrier {carrier.name} already exists")
                await tx.execute(
                    "INSERT INTO carriers (name, capacity, cps, enabled, created_at)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (
                        carrier.name,
                        carrier.capacity,
                        carrier.cps,
                        int(carrier.enabled),
                        time.time(),
                    ),
                )
                for gateway in carrier.gateways:
                    await self._add_gateway(tx, carrier.name, gateway)
                await bump_version(tx)
        except DuplicateCarrier:
            raise
        except IntegrityError as exc:
            raise DuplicateCarrier(f"carrier {carrier.name}: {exc}") from None

    async def _add_gateway(self, tx: Queries, name: str, gateway: Gateway) -> None:
        taken = await tx.fetchone(
            "SELECT carrier FROM gateways WHERE host = ? AND port = ?", (gateway.host, gateway.port)
        )
        if taken:
            raise DuplicateCarrier(f"gateway {gateway.address} belongs to carrier {taken[0]}")
        await tx.execute(
            "INSERT INTO gateways (carrier, host, port, transport, weight) VALUES (?, ?, ?, ?, ?)",
            (name, gateway.host, gateway.port, gateway.transport, gateway.weight),
        )

    async def carriers(self) -> list[Carrier]:
        """Every carrier, by name, with its gateways heaviest first."""
        async with self.db.transaction() as tx:
            carriers = await tx.fetchall(
                "SELECT name, capacity, cps, enabled FROM carriers ORDER BY name"
            )
            gateways = await tx.fetchall(
                "SELECT carrier, host, port, transport, weight FROM gateways"
                " ORDER BY weight DESC, id"
            )
        by_carrier: dict[str, list[Gateway]] = {}
        for name, host, port, transport, weight in gateways:
            by_carrier.setdefault(name, []).append(
                Gateway(name, host, int(port), transport, int(weight))
            )
        return [
            Carrier(
                name,
                tuple(by_carrier.get(name, ())),
                None if capacity is None else int(capacity),
                None if cps is None else int(cps),
                bool(enabled),
            )
            for name, capacity, cps, enabled in carriers
        ]

    async def carrier(self, name: str) -> Carrier:
        for carrier in await self.carriers():
            if carrier.name == name:
                return carrier
        raise UnknownCarrier(f"no carrier {name}")

    async def set_enabled(self, name: str, enabled: bool) -> None:
        async with self.db.transaction() as tx:
            found = await tx.execute(
                "UPDATE carriers SET enabled = ? WHERE name = ?", (int(enabled), name)
            )
            if not found:
                raise UnknownCarrier(f"no carrier {name}")
            await bump_version(tx)

    # rates

    async def rates(self, now: float) -> list[Rate]:
        """The deck rows of every carrier effective at ``now``."""
        if self.db.dialect == "mysql":
            return await self._packed_rates(now)
        rows = await self.db.fetchall(f"SELECT {RATE_COLUMNS} FROM rates{_EFFECTIVE}", (now, now))
        return [rate_from_row(row) for row in rows]

    async def _packed_rates(self, now: float) -> list[Rate]:
        # The MySQL driver decodes rows in pure Python, in the event loop: a million
        # rows took 11 s. Packed by the server into one text per 20,000 rows, the
        # same rows come in about 1.5 s and split in C. MariaDB writes a DOUBLE as
        # its shortest round-trip form, so float() gives back the stored value.
        async with self.db.transaction() as tx:
            await tx.execute(f"SET SESSION group_concat_max_len = {PACKED_MAX_BYTES}")
            packs = await tx.fetchall(
                "SELECT carrier, GROUP_CONCAT(CONCAT_WS(',', prefix, rate, connect_fee,"
                " first_increment, next_increment, IFNULL(effective_from, ''),"
                " IFNULL(effective_to, '')) SEPARATOR ';')"
                f" FROM rates{_EFFECTIVE} GROUP BY carrier, id DIV {PACKED_ROWS}",
                (now, now),
            )
        rates = []
        for carrier, packed in packs:
            for item in packed.split(";"):
                prefix, rate, fee, first, step, start, end = item.split(",")
                rates.append(
                    Rate(carrier, prefix, float(rate), float(fee), int(first), int(step),
                         float(start) if start else None, float(end) if end else None)
                )  # fmt: skip
        return rates

    async def next_rate_change(self, now: float) -> float | None:
        """When the set of rows effective at ``now`` next changes: the earliest
        ``effective_from`` or ``effective_to`` after ``now`` (None: never)."""
        row = await self.db.fetchone(
            "SELECT MIN(CASE WHEN effective_from > ? THEN effective_from END),"
            " MIN(CASE WHEN effective_to > ? THEN effective_to END) FROM rates",
            (now, now),
        )
        times = [float(t) for t in row or () if t is not None]
        return min(times, default=None)

    async def deck(self, carrier: str) -> list[Rate]:
        """Every row of one carrier's deck, effective or not, by prefix."""
        rows = await self.db.fetchall(
            f"SELECT {RATE_COLUMNS} FROM rates WHERE carrier = ? ORDER BY prefix, id", (carrier,)
        )
        return [rate_from_row(row) for row in rows]

    async def deck_page(self, carrier: str, prefix: str = "", limit: int = 100) -> list[Rate]:
        """At most ``limit`` rows of one carrier's deck whose prefix starts with ``prefix``."""
        rows = await self.db.fetchall(
            f"SELECT {RATE_COLUMNS} FROM rates WHERE carrier = ? AND prefix LIKE ?"
            " ORDER BY prefix, id LIMIT ?",
            (carrier, (parse_number(prefix) if prefix else "") + "%", limit),
        )
        return [rate_from_row(row) for row in rows]

    async def deck_sizes(self) -> dict[str, int]:
        rows = await self.db.fetchall("SELECT carrier, COUNT(*) FROM rates GROUP BY carrier")
        return {name: int(count) for name, count in rows}

    # routing profiles

    async def profiles(self) -> list[RoutingProfile]:
        rows = await self.db.fetchall(
            "SELECT prefix, weight_availability, weight_quality, weight_price, min_quality,"
            " max_price, final_codes, max_attempts FROM routing_profiles ORDER BY prefix"
        )
        return [
            RoutingProfile(
                prefix,
                float(wa),
                float(wq),
                float(wp),
                None if floor is None else float(floor),
                None if ceiling is None else float(ceiling),
                frozenset(int(code) for code in codes.split(",") if code),
                int(attempts),
            )
            for prefix, wa, wq, wp, floor, ceiling, codes, attempts in rows
        ]

    async def set_profile(self, profile: RoutingProfile) -> None:
        """Store ``profile``, replacing the one of the same prefix."""
        if profile.prefix:
            parse_number(profile.prefix)
        if profile.max_attempts < 1:
            raise InvalidValue(f"bad max_attempts {profile.max_attempts}: expected 1 or more")
        weights = (profile.weight_availability, profile.weight_quality, profile.weight_price)
        if any(w < 0 for w in weights) or sum(weights) <= 0:
            raise InvalidValue(f"bad weights {weights}: expected >= 0, not all 0")
        codes = ",".join(str(code) for code in sorted(profile.final_codes or FINAL_CODES))
        async with self.db.transaction() as tx:
            await tx.execute("DELETE FROM routing_profiles WHERE prefix = ?", (profile.prefix,))
            await tx.execute(
                "INSERT INTO routing_profiles (prefix, weight_availability, weight_quality,"
                " weight_price, min_quality, max_price, final_codes, max_attempts)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (profile.prefix, *weights, profile.min_quality, profile.max_price, codes,
                 profile.max_attempts),
            )  # fmt: skip
            await bump_version(tx)

    # DIDs

    async def add_did(self, did: Did) -> None:
        """Store ``did``; DuplicateDid if the number has one."""
        number = parse_number(did.number)
        for proxy in (did.proxy, *did.backups):
            parse_host_port(proxy)
        try:
            async with self.db.transaction() as tx:
                if await tx.fetchone("SELECT 1 FROM dids WHERE number = ?", (number,)):
                    raise DuplicateDid(f"DID {number} already exists")
                await tx.execute(
                    "INSERT INTO dids (number, proxy, backups, account) VALUES (?, ?, ?, ?)",
                    (number, did.proxy, ",".join(did.backups), did.account),
                )
                await bump_version(tx)
        except DuplicateDid:
            raise
        except IntegrityError as exc:
            raise DuplicateDid(f"DID {number}: {exc}") from None

    async def dids(self, account: str | None = None) -> list[Did]:
        """Every DID, or those of ``account``."""
        query = "SELECT number, proxy, backups, account FROM dids"
        args: tuple[str, ...] = ()
        if account is not None:
            query, args = query + " WHERE account = ?", (account,)
        rows = await self.db.fetchall(query + " ORDER BY number", args)
        return [
            Did(number, proxy, tuple(b for b in backups.split(",") if b), owner)
            for number, proxy, backups, owner in rows
        ]

    # CDRs

    async def cdrs(self, last: int) -> list[Cdr]:
        """The ``last`` CDRs written, oldest first."""
        rows = await self.db.fetchall(
            f"SELECT {CDR_COLUMNS} FROM cdrs ORDER BY id DESC LIMIT ?", (max(last, 0),)
        )
        return [cdr_from_row(row) for row in reversed(rows)]

    async def errors(
        self, source: str | None = None, limit: int | None = None
    ) -> list[tuple[str, str, dict[str, Any]]]:
        """The rows in error_queue: (source, reason, row), oldest first (the latest
        ``limit``, when given)."""
        sql = "SELECT id, source, reason, payload FROM error_queue"
        params: tuple[Any, ...] = ()
        if source is not None:
            sql, params = sql + " WHERE source = ?", (source,)
        if limit is None:
            rows = await self.db.fetchall(sql + " ORDER BY id", params)
        else:
            latest = await self.db.fetchall(sql + " ORDER BY id DESC LIMIT ?", (*params, limit))
            rows = list(reversed(latest))
        rows = [row[1:] for row in rows]
        return [(src, reason, orjson.loads(payload)) for src, reason, payload in rows]
