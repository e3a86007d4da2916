"""Trusted peers: the addresses a role believes without authentication
(docs/design.md "The trust model as built"): the proxy's ACR nodes and B2BUA, the B2BUA's
proxies, the ACR's B2BUAs.

An entry is an IP address (any port) or IP:PORT, either followed by
``;transport=tcp`` (or ``udp``, ``tls``) to trust it on that transport only:
``10.0.0.5``, ``10.0.0.5:5070``, ``10.0.0.5:5070;transport=tcp``,
``2001:db8::5``, ``[2001:db8::5]:5070``. A source address proves something
only where it cannot be spoofed: a private interface, or TCP (a connection
needs the peer to answer the handshake; UDP's source is whatever the
sender wrote). Or ``tls:NAME``: whoever proved over TLS to be the
``[[tls.peers]]`` entry NAME by its certificate, from any address
(``sipline.net.tls``; the transport notes each such connection in
``CERTIFIED``).

``TrustedPeers.trusts`` sits on every message's path (the node's flood
limits exempt trusted peers): one dict lookup for a stranger's address.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import TYPE_CHECKING, NamedTuple

from sipline.sip.headers import split_host_port

if TYPE_CHECKING:
    from sipline.sip.address import Address

TRANSPORTS = ("udp", "tcp", "tls")
CERTIFICATE = "tls:"  # an entry naming a [[tls.peers]] entry
# TLS connection id (unique in the process) -> the [[tls.peers]] name its certificate proved.
CERTIFIED: dict[int, str] = {}


class Peer(NamedTuple):
    host: str  # the IP address, compressed (IPv6 without brackets)
    port: int | None  # None: any port
    transport: str | None  # "UDP" / "TCP"; None: either


def parse_peer(text: str) -> Peer:
    """A trusted-peer entry (see the module's doc); ValueError saying what is expected."""
    where, _, params = text.strip().partition(";")
    transport = None
    if params:
        name, _, value = params.partition("=")
        if name.strip().lower() != "transport" or value.strip().lower() not in TRANSPORTS:
            raise ValueError(_EXPECTED)
        transport = value.strip().upper()
    host: str = where
    port = None
    if where.count(":") < 2 or where.startswith("["):  # a bare IPv6 address has several colons
        try:
            host, port = split_host_port(where)
        except ValueError:
            raise ValueError(_EXPECTED) from None
        if port == 0 or (port is None and host.startswith("[")):
            raise ValueError(_EXPECTED)
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        raise ValueError(_EXPECTED) from None
    return Peer(address.compressed, port, transport)


_EXPECTED = (
    "expected an IP address, IP:PORT or [IPv6]:PORT, optionally with ;transport=tcp,"
    " ;transport=udp or ;transport=tls, such as 10.0.0.5:5070;transport=tcp; or tls:NAME"
    " for a [[tls.peers]] entry"
)


class TrustedPeers:
    """A set of trusted-peer entries, asked about each message's source."""

    __slots__ = ("_by_host", "_names")

    def __init__(self, entries: Iterable[str]) -> None:
        by_host: dict[str, list[tuple[int | None, str | None]]] = {}
        names = set()
        for entry in entries:
            if entry.startswith(CERTIFICATE):
                names.add(certified_name(entry))
                continue
            peer = parse_peer(entry)
            by_host.setdefault(peer.host, []).append((peer.port, peer.transport))
        self._by_host = {host: tuple(rules) for host, rules in by_host.items()}
        self._names = frozenset(names)

    def trusts(self, source: Address) -> bool:
        rules = self._by_host.get(source.host)
        if rules is not None:
            for port, transport in rules:
                if (port is None or port == source.port) and (
                    transport is None or transport == source.transport
                ):
                    return True
        names = self._names
        return bool(names) and source.transport == "TLS" and CERTIFIED.get(source.connection) in names  # type: ignore[arg-type]

    __call__ = trusts

    @property
    def hosts(self) -> frozenset[str]:
        """Every trusted IP address, whatever port or transport it is trusted on."""
        return frozenset(self._by_host)

    def __bool__(self) -> bool:
        return bool(self._by_host or self._names)


def certified_name(entry: str) -> str:
    """The [[tls.peers]] name of a ``tls:NAME`` entry; ValueError when it has none."""
    name = entry[len(CERTIFICATE) :].strip()
    if not name:
        raise ValueError(_EXPECTED)
    return name
