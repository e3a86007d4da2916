"""Registrar bindings and the location service (RFC 3261 §10): where an AOR is reachable.

``Location`` is this node's in-memory view, authoritative for its lookups. It
is loaded from the locations table at start and changed only with what has
been committed (the registrar applies a REGISTER's changes once its group
commit succeeded), so memory never shows a binding the database lacks.
Expired bindings vanish from lookups at once and from memory at the next
``expire``; the database rows go in the writer's sweep (proxy/writer.py).

Every binding carries the version of the batch that wrote it (migration 007):
the changes other proxies committed arrive through the location feed
(proxy/feed.py) in any order with our own, and a change never replaces a
binding written by a later batch.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Protocol

from sipline.sip.address import Address

BindingKey = tuple[str, str]  # (aor, contact): the locations table's unique key


@dataclass(slots=True)
class Binding:
    aor: str  # "alice@example.com": user as written, domain lowercased
    contact: str  # the Contact URI text as registered
    expires_at: float  # wall clock (time.time())
    q: float = 1.0
    call_id: str = ""
    cseq: int = 0
    source: Address | None = None  # where the REGISTER really came from
    path: tuple[str, ...] = ()  # Path values (RFC 3327) in order
    instance: str | None = None  # +sip.instance (RFC 5626)
    reg_id: int | None = None
    user_agent: str | None = None
    node: str = ""  # the node that took the REGISTER
    updated_at: float = 0.0
    nat: bool = False  # Contact or top Via named another address than the source
    proxy: str | None = None  # HOST:PORT of the proxy holding the flow (None: this one's)
    version: int = field(default=0, compare=False)  # the batch that wrote it (0: not yet)

    @property
    def key(self) -> BindingKey:
        return (self.aor, self.contact)

    @property
    def behind_nat(self) -> bool:
        return self.nat

    def expires_in(self, now: float) -> int:
        """Whole seconds left (the ``expires`` a 200 OK shows), never negative."""
        return max(0, round(self.expires_at - now))


class Forgetter(Protocol):
    """What persists a removal made outside a REGISTER (proxy/writer.py's BindingWriter)."""

    def forget(self, binding: Binding) -> None: ...


def _order(binding: Binding) -> tuple[float, float]:
    # Highest q first (RFC 3261 §16.6); among equals the most recently registered.
    return (-binding.q, -binding.updated_at)


class Location:
    """Bindings by AOR, with an expiry index by whole second.

    ``forgetter`` persists ``remove`` (None: memory only, as in tests of lookups).
    """

    def __init__(self, forgetter: Forgetter | None = None) -> None:
        self._by_aor: dict[str, dict[str, Binding]] = {}
        self._due: dict[int, set[BindingKey]] = {}  # second -> keys expiring in it
        self._seconds: list[int] = []  # heap of the keys of _due
        self.forgetter = forgetter

    def __len__(self) -> int:
        return sum(len(contacts) for contacts in self._by_aor.values())

    @property
    def aors(self) -> int:
        """Addresses of record held (one dict length: safe to read from /metrics' thread)."""
        return len(self._by_aor)

    # -- reading ---------------------------------------------------------------
    def lookup(self, aor: str, now: float) -> list[Binding]:
        """Live bindings of ``aor``, highest q first."""
        contacts = self._by_aor.get(aor)
        if not contacts:
            return []
        live = [b for b in contacts.values() if b.expires_at > now]
        if len(live) > 1:
            live.sort(key=_order)
        return live

    def get(self, aor: str, contact: str) -> Binding | None:
        contacts = self._by_aor.get(aor)
        return contacts.get(contact) if contacts else None

    def bindings(self) -> Iterator[Binding]:
        """Every binding held, expired or not (for NAT pinging)."""
        for contacts in list(self._by_aor.values()):
            yield from list(contacts.values())

    # -- changing ----------------------------------------------------------------
    def apply(
        self, upserts: Iterable[Binding], removals: Iterable[BindingKey] = (), version: int = 0
    ) -> None:
        """Take committed changes: removals (of batch ``version``) first, then the new
        or refreshed bindings; neither touches a binding a later batch wrote."""
        for aor, contact in removals:
            held = self.get(aor, contact)
            if held is not None and held.version <= version:
                self._drop(aor, contact)
        for binding in upserts:
            held = self.get(*binding.key)
            if held is None or held.version <= binding.version:
                self._put(binding)

    def take(self, rows: Iterable[Binding]) -> None:
        """Take rows as another node committed them: a tombstone (``expires_at`` 0)
        removes its binding, any other row replaces it, unless a later batch wrote it."""
        for row in rows:
            held = self.get(*row.key)
            if held is not None and held.version > row.version:
                continue
            if row.expires_at <= 0:
                if held is not None:
                    self._drop(*row.key)
            else:
                self._put(row)

    def replace(self, bindings: Iterable[Binding]) -> None:
        """Hold exactly ``bindings`` (a full reload from the database)."""
        self._by_aor.clear()
        self._due.clear()
        self._seconds.clear()
        for binding in bindings:
            self._put(binding)

    def remove(self, binding: Binding) -> None:
        """Remove ``binding`` (NAT pings failed), unless it was refreshed meanwhile.

        The database row goes too, under the same condition (proxy/writer.py)."""
        if self.get(*binding.key) is not binding:
            return
        self._drop(*binding.key)
        if self.forgetter is not None:
            self.forgetter.forget(binding)

    def expire(self, now: float) -> list[Binding]:
        """Drop the bindings whose time has come; the ones dropped."""
        dropped = []
        seconds = self._seconds
        while seconds and seconds[0] <= now:
            for aor, contact in self._due.pop(heapq.heappop(seconds), ()):
                binding = self.get(aor, contact)
                if binding is not None and binding.expires_at <= now:
                    self._drop(aor, contact)
                    dropped.append(binding)
        return dropped

    def _put(self, binding: Binding) -> None:
        contacts = self._by_aor.setdefault(binding.aor, {})
        old = contacts.get(binding.contact)
        if old is not None:
            self._unschedule(old)
        contacts[binding.contact] = binding
        second = math.ceil(binding.expires_at)
        due = self._due.get(second)
        if due is None:
            due = self._due[second] = set()
            heapq.heappush(self._seconds, second)
        due.add(binding.key)

    def _drop(self, aor: str, contact: str) -> None:
        contacts = self._by_aor.get(aor)
        if not contacts:
            return
        binding = contacts.pop(contact, None)
        if binding is not None:
            self._unschedule(binding)
        if not contacts:
            del self._by_aor[aor]

    def _unschedule(self, binding: Binding) -> None:
        # The heap keeps the second; expire() finds its set gone or without the key.
        due = self._due.get(math.ceil(binding.expires_at))
        if due is not None:
            due.discard(binding.key)
