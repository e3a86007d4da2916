"""What only our own nodes may say or reach (docs/design.md "The trust model as built").

Internal headers cross only between our roles: ``X-Sipline-*`` (the
B2BUA's account and media call for the ACR), P-Asserted-Identity (the
proxy's word on who calls, RFC 3325 §5: believed only from a trusted peer)
and Path outside a REGISTER (RFC 3327: a registrar's business). Whatever a
stranger sends of them is taken off before anything reads it.

Our internal nodes (the B2BUAs, the ACR nodes, the relay's ng control) are
no place a subscriber may send a request to through us: ``InternalHops``
knows their addresses, and a request in a dialog may reach one only when
our signed Record-Route says the dialog runs through it (``INSIDE``: the
trusted peer it came from, or the B2BUA it went to).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from sipline.sip.address import Address
from sipline.sip.message import Request

from .rules import resolve

INTERNAL_PREFIX = "x-sipline-"
INSIDE = "ih"  # our Record-Route parameter: the internal hop this dialog runs through


def strip_internal(request: Request, *, identity: bool = True) -> None:
    """Take off what only our nodes may write from a request a stranger sent;
    ``identity=False`` keeps P-Asserted-Identity (a carrier's word on an
    inbound caller, RFC 3325 §5 between networks that trust each other)."""
    headers = request.headers
    internal = {name for name, _ in headers if name[:10].lower() == INTERNAL_PREFIX}
    for name in internal:
        headers.remove(name)
    if identity and "p-asserted-identity" in headers:
        headers.remove("p-asserted-identity")
    if "path" in headers and request.method != "REGISTER":
        headers.remove("path")


class InternalHops:
    """The (host, port) of every internal node, from the configuration."""

    __slots__ = ("_hops",)

    def __init__(self, hops: Iterable[tuple[str, int]]) -> None:
        self._hops = frozenset((_compressed(host), port) for host, port in hops)

    def __contains__(self, address: object) -> bool:
        if not isinstance(address, Address):
            return False
        host = address.host
        return (host if ":" not in host else _compressed(host), address.port) in self._hops

    def reached_by(self, uri_text: str) -> bool:
        """A URI (Contact, Path, Route) that leads to one of our internal nodes."""
        return resolve(uri_text) in self


def hop(address: Address) -> str:
    """An internal hop as the ``INSIDE`` parameter writes it."""
    return f"{address.host}~{address.port}"


def _compressed(host: str) -> str:
    try:
        return ipaddress.ip_address(host).compressed
    except ValueError:
        return host.lower()
