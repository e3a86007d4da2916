"""The request rules of a proxy (RFC 3261 §16.3 - §16.6) as small functions.

Everything here works on the core's ``Request`` and ``Address`` and the
proxy's ``Local`` identity; nothing touches a socket. A role's router (the
edge proxy's ``proxy.router``, the ACR's ``acr.router``) strings them
together for each request.

A proxy's Record-Route values can carry the dialog's flows (``sipline.proxying.flows``),
signed (``sipline.proxying.signing``).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

from sipline.sip.address import DEFAULT_PORT, Address
from sipline.sip.errors import ParseError
from sipline.sip.headers import NameAddr, Via
from sipline.sip.ids import new_tag
from sipline.sip.message import Request, Response
from sipline.sip.uri import SipUri, parse_uri

if TYPE_CHECKING:
    from sipline.net.handler import NodeLike

# Methods whose out-of-dialog requests create dialogs (§12; RFC 6665, RFC 3515).
DIALOG_METHODS = frozenset(("INVITE", "SUBSCRIBE", "REFER", "NOTIFY"))
SCHEMES = ("sip:", "sips:", "tel:")
STREAMS = frozenset(("TCP", "TLS"))  # the stream transports we speak besides UDP


@dataclass(slots=True, frozen=True)
class Rejection:
    """A request a proxy or its registrar answers itself: status, a reason phrase
    for the operator, and any header the answer needs (Unsupported for 420,
    Min-Expires for 423, Retry-After)."""

    status: int
    reason: str
    headers: tuple[tuple[str, str], ...] = ()

    def response(self, request: Request) -> Response:
        response = request.response(self.status, self.reason, to_tag=new_tag())
        for name, value in self.headers:
            response.headers.add(name, value)
        return response


class Local:
    """Who we are, for every role: where the node listens on each transport (as
    Record-Route and Contact write it), where responses to its own requests
    come back (``vias``, as its Via writes it: a worker's own UDP port,
    sipline.net.workers) and the domains it serves (a proxy's; none for the
    B2BUA). ``of(node)`` learns it from the node; every worker's port is ours
    (``worker_ports``): a Via of a sibling is a Via of ours."""

    __slots__ = (
        "addresses", "vias", "domains", "hosts", "ports", "_prefixes", "_vias", "_contacts",
    )  # fmt: skip

    def __init__(
        self,
        addresses: dict[str, Address],
        domains: Iterable[str] = (),
        vias: dict[str, Address] | None = None,
        worker_ports: Iterable[int] = (),
    ) -> None:
        self.addresses = addresses  # "UDP"/"TCP"/"TLS" -> where we listen
        self.vias = vias if vias is not None else addresses
        self.domains = [d.lower() for d in domains]
        self.hosts = frozenset(a.host.lower() for a in addresses.values())
        workers = tuple(worker_ports)
        self.ports = frozenset((*(a.port for a in addresses.values()), *workers))
        self._prefixes = tuple(f"sip:{a.hostport};" for a in addresses.values()) + tuple(
            f"sips:{a.hostport};" for t, a in addresses.items() if t == "TLS"
        )
        self._vias = tuple(f"SIP/2.0/{t} {a.hostport};" for t, a in addresses.items())
        udp = addresses.get("UDP")
        if udp is not None:
            self._vias += tuple(f"SIP/2.0/UDP {udp._replace(port=p).hostport};" for p in workers)
        self._contacts: dict[tuple[str, str], str] = {}

    @classmethod
    def of(cls, node: NodeLike, domains: Iterable[str] = ()) -> Local:
        """Where ``node`` listens now, on each transport it listens on."""
        addresses, vias = {}, {}
        for transport in ("UDP", "TCP", "TLS"):
            try:
                addresses[transport] = node.local_address(transport)
                vias[transport] = node.via_address(transport)
            except LookupError:
                pass
        return cls(addresses, domains, vias, node.worker_ports())

    # -- is it us? -----------------------------------------------------------
    def names_us(self, uri_text: str) -> bool:
        """A Route (or strict-routed Request-URI) value that resolves to us (§16.4)."""
        if uri_text.startswith(self._prefixes):
            return True
        uri = _sip_uri(uri_text)
        if uri is None:
            return False
        host = uri.host.lower()
        if host.startswith("["):
            host = host[1:-1]
        ours = host in self.hosts or host in self.domains
        return ours and (uri.port is None or uri.port in self.ports)

    def is_own_record_route(self, uri_text: str) -> bool:
        """A value we put in a Record-Route (ours carry ``lr``): a strict router
        upstream moved it into the Request-URI (§16.4)."""
        return uri_text.startswith(self._prefixes) and ";lr" in uri_text

    def domain_of(self, uri: SipUri) -> str | None:
        """The domain of ours a Request-URI names; our own address means the first."""
        return self.domain_at(uri.host, uri.port)

    def domain_at(self, host: str, port: int | None) -> str | None:
        """``domain_of`` for a SIP URI's host and port (``sip_host_port``)."""
        host = host.lower()
        if host in self.domains:
            return host
        if host.strip("[]") in self.hosts and (port is None or port in self.ports):
            return self.domains[0]
        return None

    def sent_by_us(self, via_value: str) -> bool:
        return via_value.startswith(self._vias)

    def is_self(self, address: Address) -> bool:
        return address.host in self.hosts and address.port in self.ports

    # -- what we write --------------------------------------------------------
    def via(self, transport: str, branch: str, *, rport: bool = False) -> str:
        """Our Via on ``transport``; ``rport`` asks for the response at our source
        port (RFC 3581: what a UA sends)."""
        via = f"SIP/2.0/{transport} {self.vias[transport].hostport};branch={branch}"
        return f"{via};rport" if rport else via

    def contact(self, transport: str, user: str) -> str:
        """A Contact naming ``user`` at our address on ``transport``."""
        contact = self._contacts.get((transport, user))
        if contact is None:
            where = self.addresses[transport].hostport
            tparam = "" if transport == "UDP" else f";transport={transport.lower()}"
            contact = self._contacts[(transport, user)] = f"<sip:{user}@{where}{tparam}>"
        return contact

    def record_route(self, transport: str, params: str) -> str:
        """A Record-Route value naming us on ``transport``, loose-routing (``lr``)."""
        where = self.addresses[transport].hostport
        tparam = "" if transport == "UDP" else f";transport={transport.lower()}"
        return f"<sip:{where}{tparam};lr{params}>"


# -- §16.3 request validation ---------------------------------------------------
def validate(request: Request) -> Rejection | None:
    """Steps 2, 3 and 5 of §16.3 (step 1 is the parser's; 4 needs routing first)."""
    if not request.uri.lower().startswith(SCHEMES):
        scheme = request.uri.partition(":")[0]
        return Rejection(416, f"Unsupported URI Scheme {scheme}: only sip, sips and tel are routed")
    max_forwards = request.max_forwards
    if max_forwards is not None and max_forwards <= 0:
        return Rejection(483, "Too Many Hops: Max-Forwards reached 0")
    required = request.headers.values("proxy-require")
    if required:
        # We support no option-tags a proxy must understand (§16.3 step 5, §20.29).
        unsupported = ", ".join(required)
        return Rejection(
            420, f"Bad Extension: unsupported {unsupported}", (("Unsupported", unsupported),)
        )
    return None


def decrement_max_forwards(request: Request) -> None:
    """§16.6 step 3 (a request without the header gets the RFC's default, 70)."""
    value = request.max_forwards
    request.headers.set("Max-Forwards", str((70 if value is None else value) - 1))


# -- §16.4 route information preprocessing --------------------------------------
def preprocess_routes(request: Request, local: Local) -> list[dict[str, str]]:
    """Undo a strict router upstream and pop every top Route naming us (§16.4).

    Returns the parameters of each entry that was ours, as written (our
    Record-Route values carry the dialog's flows, believed only once their
    signature checks: ``signing.Signer.believe``); empty when nothing named
    us: not a request routed by our Record-Route or by a Route set
    pre-loaded with us.
    """
    found: list[dict[str, str]] = []
    headers = request.headers
    if "route" in headers and local.is_own_record_route(request.uri):
        # A strict router put our Record-Route URI in the Request-URI and the
        # remote target last in Route: put the target back.
        found.append(route_params(request.uri))
        values = headers.values("route")
        headers.remove("route")
        for value in values[:-1]:
            headers.add("Route", value)
        request.uri = NameAddr.parse(values[-1]).uri_text
    while "route" in headers:
        uri_text = request.routes[0].uri_text
        if not local.names_us(uri_text):
            break
        headers.pop_first_value("route")
        found.append(route_params(uri_text))
    return found


def route_params(uri_text: str) -> dict[str, str]:
    """The parameters of a URI we wrote, as written (no unescaping needed)."""
    params: dict[str, str] = {}
    for part in uri_text.partition("?")[0].split(";")[1:]:
        name, _, value = part.partition("=")
        params[name.lower()] = value
    return params


def strict_route(request: Request) -> None:
    """§16.6 step 6: a next hop without ``lr`` is a strict router; it wants
    itself in the Request-URI and the Request-URI at the end of Route."""
    routes = request.routes
    if not routes or ";lr" in routes[0].uri_text and routes[0].uri.lr:
        return
    headers = request.headers
    first = headers.pop_first_value("route")
    headers.add("Route", f"<{request.uri}>")
    request.uri = NameAddr.parse(first or "").uri_text


# -- §16.3 step 4 loop detection ------------------------------------------------
def loop_key(request: Request) -> str:
    """What the branch of every copy we forward ends with (§16.6 step 8).

    A request coming back with the same key in a Via of ours has looped; a
    different key (another Request-URI, Route set ...) means it spirals
    (§16.3 step 4, RFC 5393 §4.2). The Vias are left out: they differ on
    every pass. Python's string hash is per process, and so is our sent-by.
    """
    headers = request.headers
    key = hash(
        (
            request.uri,
            headers.get("from"),
            headers.get("to"),
            headers.get("call-id"),
            headers.get("cseq"),
            tuple(headers.values("route")),
            headers.get("proxy-require"),
        )
    )
    return format(key & 0xFFFFFFFFFFFFFFFF, "x")


def looped(request: Request, local: Local, key: str) -> bool:
    """A Via of ours whose branch carries this very request's loop key."""
    for value in request.headers.values("via"):
        if local.sent_by_us(value):
            branch = Via.parse(value).branch or ""
            if branch.rpartition(".")[2] == key:
                return True
    return False


def stateless_branch(request: Request) -> str:
    """§16.11: the same request forwarded statelessly again gets the same branch."""
    branch = request.via.branch or request.call_id
    return f"z9hG4bK-sl{format(hash(branch) & 0xFFFFFFFFFFFFFFFF, 'x')}"


# -- where a URI leads ---------------------------------------------------------------
@lru_cache(maxsize=4096)
def resolve(uri_text: str) -> Address | None:
    """The next hop a SIP URI names (RFC 3263 reduced to IP literals): maddr or
    host, the transport parameter, the default port. None when that needs DNS,
    or names a transport we do not speak."""
    uri = _sip_uri(uri_text)
    if uri is None:
        return None
    host = uri.maddr or uri.host
    if host.startswith("["):
        host = host[1:-1]
    if not _is_ip(host):
        return None
    transport = (uri.transport or ("tls" if uri.scheme == "sips" else "udp")).upper()
    if transport not in STREAMS and transport != "UDP":
        return None
    if uri.scheme == "sips":
        transport = "TLS"  # RFC 5630 §3.1.2: a sips URI is reached over TLS, whatever it says
    return Address(transport, host, uri.port or DEFAULT_PORT[transport])


def sip_host_port(uri_text: str) -> tuple[str, int | None] | None:
    """The host and port of a SIP or SIPS URI; None for another scheme or one
    that does not parse. Cached for texts up to 256 characters (peers repeat)."""
    if len(uri_text) > 256:
        return _host_port(uri_text)
    return _cached_host_port(uri_text)


def _host_port(uri_text: str) -> tuple[str, int | None] | None:
    uri = _sip_uri(uri_text)
    return None if uri is None else (uri.host, uri.port)


_cached_host_port = lru_cache(maxsize=4096)(_host_port)


def next_hop(request: Request) -> Address | None:
    """The first Route if any, else the Request-URI (§16.6 step 7, §16.12)."""
    routes = request.routes
    return resolve(routes[0].uri_text if routes else request.uri)


def pop_own_via(response: Response) -> bool:
    """§16.7 step 3: take our Via off a response; False when none is left (it was for us)."""
    headers = response.headers
    headers.pop_first_value("via")
    return "via" in headers


def via_address(via: Via) -> Address:
    """Where a response goes by its top Via (§18.2.2, RFC 3581), statelessly.

    Never to its ``maddr``: that is the sender's word, and would let it aim
    our responses at any host."""
    host = via.received or via.host
    port = via.rport or via.port or DEFAULT_PORT.get(via.transport, 5060)
    transport = via.transport if via.transport in STREAMS else "UDP"
    return Address(transport, host.strip("[]"), port)


@lru_cache(maxsize=1024)
def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _sip_uri(uri_text: str) -> SipUri | None:
    try:
        uri = parse_uri(uri_text)
    except ParseError:
        return None
    return uri if isinstance(uri, SipUri) else None
