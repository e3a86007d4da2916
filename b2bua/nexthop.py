"""Where a call's B leg goes: the ACR pair in round robin, or a pattern route's gateways.

``NextHops.plan`` gives the ordered list of hops one call tries (failover on
timeout or 503 walks it). A hop is down after ``probe_failures`` failed
OPTIONS probes in a row, or at once when it fails a call (``mark_down``: it
said nothing to an INVITE for ``silence_timeout``, or answered 503, RFC 3261
§21.5.4); a down hop goes to the end of the list (tried only when every
other hop has failed) and is up again after ``probe_successes`` answered
probes in a row (hysteresis). With every hop down, calls still try them all,
the one heard from last first: a call is never refused for it. Pattern
routes are matched in order: a pattern of digits (with an optional leading
+) is a prefix of the dialled number, anything else a regular expression
matching the whole number.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sipline.config import B2buaSection, split_hop
from sipline.sip.address import Address
from sipline.sip.errors import ParseError
from sipline.sip.message import Request
from sipline.sip.uri import SipUri, TelUri, Uri

if TYPE_CHECKING:
    from sipline.sip.transaction import ClientTransaction


@dataclass(slots=True, eq=False)
class Hop:
    """An ACR node or a gateway, with its probe state (times are monotonic)."""

    address: Address
    up: bool = True
    failures: int = 0  # probes failed in a row
    successes: int = 0  # probes answered in a row
    probe: ClientTransaction | None = None  # the probe out and unanswered
    next_probe: float = 0.0  # when it is probed next
    heard: float = float("-inf")  # when it last answered anything of ours

    def __str__(self) -> str:
        return f"{self.address.host}:{self.address.port}"


@dataclass(slots=True)
class Route:
    """A pattern route: numbers it matches go to its gateways, in order."""

    name: str
    pattern: str
    hops: list[Hop]
    prefix: str | None = None
    regex: re.Pattern[str] | None = None

    def matches(self, number: str) -> bool:
        if self.prefix is not None:
            return number.startswith(self.prefix)
        assert self.regex is not None
        return self.regex.fullmatch(number) is not None


@dataclass(slots=True)
class Plan:
    """The hops one call tries, in order; ``route`` names the pattern route (None: the ACRs)."""

    hops: list[Hop]
    route: str | None = None
    tried: int = 0  # hops tried so far

    def next(self) -> Hop | None:
        if self.tried >= len(self.hops):
            return None
        hop = self.hops[self.tried]
        self.tried += 1
        return hop


@dataclass(slots=True)
class NextHops:
    acr: list[Hop]
    routes: list[Route]
    probe_failures: int = 3
    probe_successes: int = 2
    probe_interval: float = 5.0
    probe_down_interval: float = 0.5  # how often a hop that is down is probed
    hops: dict[Address, Hop] = field(default_factory=dict)  # every distinct hop, to probe
    _turn: int = 0

    @classmethod
    def from_settings(cls, b2bua: B2buaSection) -> NextHops:
        """From the [b2bua] section: ``acr``, ``routes`` and the ``probe_*`` keys."""
        hops: dict[Address, Hop] = {}

        def hop(text: str) -> Hop:
            address = hop_address(text)
            found = hops.get(address)
            if found is None:
                found = hops[address] = Hop(address)
            return found

        acr = [hop(text) for text in b2bua.acr]
        routes = []
        for entry in b2bua.routes:
            route = Route(
                entry.name or entry.pattern, entry.pattern, [hop(g) for g in entry.gateways]
            )
            if entry.pattern.lstrip("+").isdigit():
                route.prefix = entry.pattern
            else:
                route.regex = re.compile(entry.pattern)
            routes.append(route)
        return cls(
            acr, routes, b2bua.probe_failures, b2bua.probe_successes, b2bua.probe_interval,
            min(b2bua.probe_down_interval, b2bua.probe_interval), hops,
        )  # fmt: skip

    def plan(self, number: str) -> Plan:
        """The hops a call to ``number`` tries: a matching route's gateways in order
        (up ones first), else the ACR nodes in round robin over the up ones."""
        for route in self.routes:
            if route.matches(number):
                return Plan(_up_first(route.hops), route.name)
        up = [hop for hop in self.acr if hop.up]
        if up:
            turn = self._turn % len(up)
            self._turn = turn + 1
            ordered = up[turn:] + up[:turn]
            if len(up) < len(self.acr):
                ordered += _last_heard_first(hop for hop in self.acr if not hop.up)
            return Plan(ordered)
        return Plan(_last_heard_first(self.acr))

    def at(self, source: Address) -> Hop | None:
        """The hop a message came from (over UDP they answer from where we send; over
        a stream, on the connection we opened to their address)."""
        return self.hops.get(Address(source.transport, source.host, source.port))

    def up(self) -> int:
        """How many hops are up."""
        return sum(1 for hop in self.hops.values() if hop.up)

    def mark_down(self, hop: Hop) -> bool:
        """A hop that failed a call is down at once, without waiting for its probes;
        True if it was up."""
        hop.successes = 0
        if not hop.up:
            return False
        hop.up = False
        return True

    def probed(self, hop: Hop, answered: bool) -> bool:
        """Count a probe's outcome; True when the hop went up or down."""
        if answered:
            hop.failures = 0
            hop.successes += 1
            if not hop.up and hop.successes >= self.probe_successes:
                hop.up = True
                return True
        else:
            hop.successes = 0
            hop.failures += 1
            if hop.up and hop.failures >= self.probe_failures:
                hop.up = False
                return True
        return False


def _up_first(hops: list[Hop]) -> list[Hop]:
    if all(hop.up for hop in hops):
        return list(hops)
    return [hop for hop in hops if hop.up] + _last_heard_first(hop for hop in hops if not hop.up)


def _last_heard_first(hops: Iterable[Hop]) -> list[Hop]:
    """Hops that are down: one that answered lately (a probe, a call) is likelier
    to take a call than one silent since it went down."""
    return sorted(hops, key=_heard, reverse=True)


def _heard(hop: Hop) -> float:
    return hop.heard


def hop_address(text: str) -> Address:
    """A next hop setting (HOST:PORT[;transport=...]) as the address we send to."""
    return Address(*split_hop(text))


def dialled_number(request: Request) -> str:
    """The number a call is for: the Request-URI's user part (a tel: URI's number)."""
    try:
        return number_of(request.request_uri)
    except ParseError:
        return ""


def number_of(uri: Uri) -> str:
    """A SIP URI's user part without its parameters, a tel: URI's number, else ""."""
    if isinstance(uri, SipUri):
        user = uri.user or ""
        return user.partition(";")[0]
    if isinstance(uri, TelUri):
        return uri.number
    return ""
