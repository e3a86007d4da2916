"""Where messages come from and go to, and the RFC 3581 / §18.2.2 rules for them.

An ``Address`` names a transport endpoint. ``connection`` identifies the
stream connection a message arrived on (or must leave on); the shell assigns
these ids, the core only carries them.
"""

from __future__ import annotations

from typing import NamedTuple

from .message import Request


class Address(NamedTuple):
    transport: str  # "UDP" or "TCP" (upper case, as in Via)
    host: str
    port: int
    connection: int | None = None

    def __str__(self) -> str:
        return f"{self.transport.lower()}:{self.hostport}"

    @property
    def hostport(self) -> str:
        """``host:port`` as Via and SIP URIs write it (IPv6 in brackets)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def reliable(self) -> bool:
        return self.transport != "UDP"


# The ``connection`` of a UDP address that is a UA's own flow (where it sends
# from): what goes to it leaves from the socket it sends to, the listening one,
# for a NAT in between lets in only what comes from there (RFC 5626 §3.4); a
# worker's own socket (sipline.net.workers) would not do.
UDP_FLOW = 0


def as_flow(address: Address) -> Address:
    """``address`` as a UA's flow (a UDP one marked ``UDP_FLOW``; a stream one names its connection)."""
    if address.transport == "UDP" and address.connection is None:
        return address._replace(connection=UDP_FLOW)
    return address


DEFAULT_PORT = {"UDP": 5060, "TCP": 5060, "TLS": 5061, "SCTP": 5060, "WS": 80, "WSS": 443}


def stamp_received(request: Request, source: Address) -> None:
    """Add ``received`` (RFC 3261 §18.2.1) and fill ``rport`` (RFC 3581 §4) in the top Via."""
    via = request.via
    changed = False
    if via.host != source.host:
        via.params["received"] = source.host
        changed = True
    if "rport" in via.params:
        via.params["rport"] = str(source.port)
        via.params["received"] = source.host
        changed = True
    if changed:
        request.set_top_via(via)


def response_address(request: Request, source: Address) -> Address:
    """Where the response to ``request`` goes: back to its source, always.

    RFC 3581's received/rport rule applied whether or not the Via asks for
    it, on the transport (and the connection) the request came on. The Via's
    ``maddr``, transport and sent-by are the sender's say and are never
    obeyed (RFC 3261 §18.2.2 would let one forged Via aim our answers, and
    our retransmissions of them, at any host, or make us open a TCP
    connection anywhere). ``request`` keeps the ``received``/``rport`` the
    server stamped on it, for the client to read.
    """
    return source
