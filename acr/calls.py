"""What the ACR keeps of a call: the hops to try, the attempt in progress,
the answered call until its BYE; and who a request comes from.

Plain bookkeeping over the core's types, no I/O: ``acr.router`` drives it.
Per call only what failover and the CDR need is kept, in memory, and dropped
when the call ends.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum
from typing import Any

from sipline.carriers.model import Carrier, Cdr, Did
from sipline.config import split_host_port
from sipline.peers import CERTIFIED, TrustedPeers
from sipline.sip.address import DEFAULT_PORT, Address
from sipline.sip.errors import ParseError
from sipline.sip.headers import NameAddr, parse_params, unquote
from sipline.sip.message import Request, Response
from sipline.sip.transaction import ClientTransaction, ServerTransaction
from sipline.sip.uri import SipUri, TelUri

ACCOUNT_HEADER = "x-sipline-account"  # the B2BUA's: whose call it is (never sent to carriers)
# The B2BUA's too: the Call-ID its media is anchored at the relay under (its A leg's), which
# names the relay's per-call quality hash; the B leg that reaches us has a Call-ID of its own.
MEDIA_CALL_HEADER = "x-sipline-media-call"
# The B2BUA's too: when it gives up on the INVITE (Unix time), unless it heard from us first.
DEADLINE_HEADER = "x-sipline-deadline"
INTERNAL_HEADERS = (ACCOUNT_HEADER, MEDIA_CALL_HEADER, DEADLINE_HEADER)
MAX_CALL_ID = 256
_SEPARATORS = str.maketrans("", "", "-.() ")


class Source(Enum):
    """Who sent a request (RFC 3261 leaves this to local policy)."""

    CARRIER = "carrier"  # a carrier's gateway: an inbound call to one of our DIDs
    PEER = "peer"  # a trusted peer (the B2BUAs): an outbound call to a carrier
    STRANGER = "stranger"  # anyone else: 403


class Sources:
    """Classifies a request's source address: gateways by HOST:PORT, trusted
    peers as ``settings.acr.trusted`` names them (``sipline.peers``).

    A gateway reached over TCP or TLS sends on connections from any port of
    its host, so its host is enough on those; over TLS a carrier is also
    known by its certificate, proved for the ``[[tls.peers]]`` entry named as
    the carrier (``sipline.peers.CERTIFIED``), from wherever it connects.

    In-dialog requests may come from a gateway's host on another port (a
    carrier's media server hanging up), so ``known_host`` is looser.
    """

    __slots__ = ("gateways", "streams", "carriers", "peers", "hosts")

    def __init__(self, carriers: Iterable[Carrier], trusted: Iterable[str], dids: Iterable[Did]):
        self.gateways: dict[tuple[str, int], str] = {}
        self.streams: dict[str, str] = {}  # host of a TCP or TLS gateway -> its carrier
        self.carriers: set[str] = set()
        for carrier in carriers:
            self.carriers.add(carrier.name)
            for gateway in carrier.gateways:
                self.gateways[(gateway.host, gateway.port)] = carrier.name
                if gateway.transport != "udp":
                    self.streams[gateway.host] = carrier.name
        self.peers = TrustedPeers(trusted)
        self.hosts = {host for host, _ in self.gateways} | self.peers.hosts
        for did in dids:
            for proxy in (did.proxy, *did.backups):
                self.hosts.add(split_host_port(proxy, DEFAULT_PORT["UDP"])[0])

    def classify(self, source: Address) -> Source:
        if (source.host, source.port) in self.gateways:
            return Source.CARRIER
        if source.transport != "UDP" and source.host in self.streams:
            return Source.CARRIER
        if source.transport == "TLS" and CERTIFIED.get(source.connection) in self.carriers:  # type: ignore[arg-type]
            return Source.CARRIER
        if self.peers.trusts(source):
            return Source.PEER
        return Source.STRANGER

    def known_host(self, source: Address) -> bool:
        return source.host in self.hosts


def dialled_number(request: Request) -> str | None:
    """The Request-URI's number: a sip(s) user part or a tel: number, digits
    only (visual separators and a leading + dropped); None when it is no number."""
    try:
        uri = request.request_uri
    except ParseError:
        return None
    if isinstance(uri, SipUri):
        text = uri.user or ""
    elif isinstance(uri, TelUri):
        text = uri.number
    else:
        return None
    text = text.partition(";")[0].translate(_SEPARATORS).removeprefix("+")
    return text if text.isdigit() else None


def user_part(request: Request) -> str:
    """The Request-URI's user part as written (kept towards the next hop)."""
    uri = request.request_uri
    if isinstance(uri, SipUri):
        return uri.user or ""
    if isinstance(uri, TelUri):
        return uri.number
    return ""


def caller_of(request: Request) -> str:
    """Who calls, for the CDR: the asserted identity's user (RFC 3325) or the From's."""
    asserted = request.headers.get("p-asserted-identity")
    try:
        uri = NameAddr.parse(asserted).uri if asserted else request.from_.uri
    except ParseError:
        return ""
    if isinstance(uri, SipUri):
        return uri.user or uri.host
    if isinstance(uri, TelUri):
        return uri.number
    return ""


def address_of(host_port: str, transport: str = "udp") -> Address:
    """HOST:PORT (a gateway's or a DID proxy's) as a next hop."""
    transport = transport.upper()
    return Address(transport, *split_host_port(host_port, DEFAULT_PORT[transport]))


def hop_uri(user: str, host_port: str, transport: str = "udp") -> str:
    """The Request-URI towards a gateway or proxy: the dialled user at its address."""
    where = address_of(host_port).hostport
    tparam = "" if transport.lower() == "udp" else f";transport={transport.lower()}"
    prefix = f"{user}@" if user else ""
    return f"sip:{prefix}{where}{tparam}"


@dataclass(slots=True, frozen=True)
class Hop:
    """One place a call may go: a carrier's gateway (``candidate`` is the
    ranking's Candidate) or a DID's proxy (``candidate`` None)."""

    dest: Address
    address: str  # HOST:PORT, the key of health and CDRs
    uri: str  # the Request-URI sent there
    candidate: Any = None


class Try:
    """One attempt of a call at one hop, and its client transaction."""

    __slots__ = ("call", "hop", "txn", "sent", "start", "pdd", "done", "answered", "late", "held")

    def __init__(self, call: Call, hop: Hop, sent: float, start: float) -> None:
        self.call = call
        self.hop = hop
        self.txn: ClientTransaction | None = None
        self.sent = sent  # monotonic, for the PDD
        self.start = start  # wall clock, for the statistics
        self.pdd: float | None = None  # seconds to the first 18x; None: none yet
        self.done = False  # a final response came, or we gave up on it
        self.answered = False  # its 2xx went upstream
        self.late: LateAnswer | None = None  # its 2xx came after we gave up on it
        self.held = False  # its 2xx waits for the journal: no retransmission goes up meanwhile

    def __repr__(self) -> str:
        return f"<Try {self.hop.address} done={self.done}>"


class Call:
    """The response context of one INVITE the ACR routes: its hops in order
    (serial failover), the attempt in progress and what the CDR needs."""

    __slots__ = (
        "server",
        "request",
        "hops",
        "index",
        "current",
        "finals",
        "answered",
        "cancelled",
        "key",
        "final_codes",
        "outbound",
        "number",
        "account",
        "caller",
        "start",
        "carrier",
        "reached",
        "media_call",
        "status",
        "deadline",
    )

    def __init__(
        self,
        server: ServerTransaction | None,
        request: Request,
        hops: list[Hop],
        *,
        final_codes: frozenset[int],
        outbound: bool,
        number: str,
        start: float,
    ) -> None:
        self.server = server
        self.request = request  # as received, Route popped, Max-Forwards decremented, RR added
        self.hops = hops
        self.index = 0  # the next hop to try
        self.current: Try | None = None
        self.finals: list[Response] = []
        self.answered = False  # a final response went upstream
        self.cancelled = False
        self.key = ""  # the loop key every copy's branch carries
        self.final_codes = final_codes
        self.outbound = outbound
        self.number = number
        self.account: str | None = None
        self.caller = ""
        self.start = start  # wall clock: the INVITE arrived
        self.carrier: str | None = None  # the carrier counted in the shared counters now
        self.reached: Try | None = None  # the last attempt that went to a carrier
        self.media_call: str | None = None  # the relay's name of the call's media, if anchored
        self.status = 0  # the final status the caller got; 0: none yet
        self.deadline: float | None = None  # DEADLINE_HEADER's, when a peer gave one

    def next_hop(self) -> Hop | None:
        if self.cancelled or self.index >= len(self.hops):
            return None
        hop = self.hops[self.index]
        self.index += 1
        return hop

    def skip_carrier(self, name: str) -> None:
        """Pass over the rest of this carrier's gateways (no headroom)."""
        hops = self.hops
        while self.index < len(hops) and _carrier_of(hops[self.index]) == name:
            self.index += 1


def _carrier_of(hop: Hop) -> str | None:
    return None if hop.candidate is None else hop.candidate.carrier.name


class LateAnswer:
    """A 2xx from an attempt we had given up on (the PDD limit, a CANCEL it
    crossed), which we ACK and BYE: the carrier bills it as a connected call,
    so it gets a CDR of its own when its BYE is over. Context of that BYE."""

    __slots__ = ("attempt", "answer", "bye_sent", "ack", "billed")

    def __init__(self, attempt: Try, answer: float, ack: Request) -> None:
        self.attempt = attempt
        self.answer = answer  # wall clock: its 2xx arrived
        self.bye_sent = answer  # wall clock: our BYE went out
        self.ack = ack  # sent again for every retransmission of the 2xx (§13.2.2.4)
        self.billed = False


@dataclass(slots=True)
class Answered:
    """An answered call to a carrier, kept until its BYE: its CDR so far (the
    answer is its end until then), as the journal holds it."""

    cdr: Cdr
    answered_at: float  # monotonic, for the sweep of calls that never end
    media_call: str | None = None  # the relay's Call-ID for its media figures (MEDIA_CALL_HEADER)


def media_call_of(value: str | None) -> str | None:
    """The relay's Call-ID from MEDIA_CALL_HEADER; None when absent or not a Call-ID
    (RFC 3261 §25.1 word: no whitespace; bounded)."""
    if value is None:
        return None
    value = value.strip()
    if not value or len(value) > MAX_CALL_ID or any(c.isspace() for c in value):
        return None
    return value


def deadline_of(value: str | None) -> float | None:
    """DEADLINE_HEADER's time (Unix seconds); None when absent or not a number."""
    if value is None:
        return None
    try:
        deadline = float(value.strip())
    except ValueError:
        return None
    return deadline if math.isfinite(deadline) else None


def is_ghost(request: Request) -> bool:
    """A BYE with ``Reason: SIP;cause=200;text="ghost"`` (RFC 3326): the B2BUA hangs up
    an answer to an INVITE it had given up on, which must never be billed."""
    for value in request.headers.values("reason"):
        protocol, _, text = value.partition(";")
        if protocol.strip().upper() != "SIP":
            continue
        try:
            params = parse_params(text)
        except ParseError:
            continue
        if params.get("cause") == "200" and unquote(params.get("text") or "") == "ghost":
            return True
    return False
