"""IP networks an address may belong to: who may send ng commands (``relay.ng_allowed``).

An ng command makes the relay bind ports and its reply is larger than the
request, so the control port answers only the hosts of these networks;
anything else is dropped unanswered (relay.media). Answers are cached per
host, up to a bound so that spoofed sources cannot grow the cache: our
proxies and B2BUAs, few and talking from the start, are in it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

__all__ = ["Networks"]

KNOWN_HOSTS = 1024  # hosts whose answer is remembered; others are looked up each time


class Networks:
    """``host in networks``: an IPv4 or IPv6 address (IPv4-mapped counts as IPv4)."""

    __slots__ = ("networks", "_known")

    def __init__(self, networks: Iterable[str]) -> None:
        self.networks = tuple(ipaddress.ip_network(n, strict=False) for n in networks)
        self._known: dict[str, bool] = {}

    def __contains__(self, host: str) -> bool:
        known = self._known.get(host)
        if known is None:
            known = self._lookup(host)
            if len(self._known) < KNOWN_HOSTS:
                self._known[host] = known
        return known

    def _lookup(self, host: str) -> bool:
        try:
            address = ipaddress.ip_address(host.partition("%")[0])  # no IPv6 zone id
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address in network for network in self.networks)
