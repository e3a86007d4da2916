"""The STUN server's core, sans-IO: one request in, the reply to send (or why none) out.

RFC 5389 (and RFC 8489, which keeps its wire format) Binding requests get
XOR-MAPPED-ADDRESS; RFC 3489 clients (no magic cookie) MAPPED-ADDRESS
instead (RFC 5389 §12.2). With a second address configured
(``Layout.alt_host``), RFC 5780 behaviour discovery: OTHER-ADDRESS,
RESPONSE-ORIGIN and CHANGE-REQUEST, the reply then leaving from whichever of
the four addresses the request asked for.

No larger than needed: a UDP request's source can be spoofed, and every byte
a reply has beyond the request is a byte an attacker gets sent to its victim
for free. So a reply carries what the client asked for and nothing more: no
SOFTWARE (optional, RFC 8489 §14.14, and it names our version to anyone), no
MAPPED-ADDRESS beside XOR-MAPPED-ADDRESS for an RFC 5389 client, FINGERPRINT
only when the request had one (ICE's checks do, RFC 8445 §7.2.2), and the
error reason phrases RFC 5389 §15.6 suggests. A 20-byte Binding request gets
32 bytes back (44 for an IPv6 source; 24 more with behaviour discovery), an
unknown method 40; it was 72 to 120 bytes. A reply always goes to the
request's source, never to an address the request names (RFC 3489's
RESPONSE-ADDRESS is not understood: 420), and over TCP only after the
handshake.

The codec is aioice's ``stun`` module. It knows the RFC 5780 attributes; this
module registers UNKNOWN-ATTRIBUTES with it and adds what its parser leaves to
the receiver (RFC 5389 §7.3): the header checks, attributes that overrun the
message, a FINGERPRINT that is not last, and unknown comprehension-required
attributes. RESPONSE-PORT and PADDING (RFC 5780 §7.5, §7.6) are not supported:
they are comprehension-required, so a request carrying them gets 420.

    responder = StunResponder(Layout("127.0.0.1", 3478))
    outcome = responder.handle(datagram, source=("192.0.2.1", 40000), local=("127.0.0.1", 3478))
    if isinstance(outcome, Reply):
        send(outcome.data, outcome.dest, from_=outcome.origin)
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

from aioice import stun

Addr = tuple[str, int]

HEADER_LENGTH = stun.HEADER_LENGTH
COOKIE = stun.COOKIE.to_bytes(4, "big")
CLASS_MASK = 0x0110
METHOD_MASK = 0x3EEF
TYPE_FINGERPRINT = 0x8028
TYPE_CHANGE_REQUEST = 0x0003
TYPE_UNKNOWN_ATTRIBUTES = 0x000A
CHANGE_IP = 0x4  # CHANGE-REQUEST flags, RFC 5780 §7.2
CHANGE_PORT = 0x2
COMPREHENSION_OPTIONAL = 0x8000  # RFC 5389 §15: types below it must be understood
BAD_REQUEST = "Bad Request"  # the reason phrases of RFC 5389 §15.6
UNKNOWN_ATTRIBUTE = "Unknown Attribute"

# Comprehension-required attributes a Binding request may carry that we take.
# Credentials are understood but not required: this server answers without
# authentication (RFC 8489 §9 leaves it to the usage); ICE's own attributes
# come with connectivity checks that may reach any Binding server.
UNDERSTOOD = frozenset(
    {
        0x0006,  # USERNAME
        0x0008,  # MESSAGE-INTEGRITY
        0x0014,  # REALM
        0x0015,  # NONCE
        0x001C,  # MESSAGE-INTEGRITY-SHA256 (RFC 8489)
        0x001E,  # USERHASH (RFC 8489)
        0x0024,  # PRIORITY (RFC 8445)
        0x0025,  # USE-CANDIDATE (RFC 8445)
    }
)

_ATTRIBUTE_HEADER = struct.Struct("!HH")
_FINGERPRINT = _ATTRIBUTE_HEADER.pack(TYPE_FINGERPRINT, 4)
_TYPE = struct.Struct("!H")


def _pack_types(types: list[int]) -> bytes:
    return b"".join(_TYPE.pack(t) for t in types)


def _unpack_types(data: bytes) -> list[int]:
    return [t for (t,) in _TYPE.iter_unpack(data[: len(data) & ~1])]


def _register_unknown_attributes() -> None:
    """Teach aioice's codec UNKNOWN-ATTRIBUTES (RFC 5389 §15.9), through its attribute tables."""
    entry = (TYPE_UNKNOWN_ATTRIBUTES, "UNKNOWN-ATTRIBUTES", _pack_types, _unpack_types)
    stun.ATTRIBUTES_BY_TYPE.setdefault(entry[0], entry)
    stun.ATTRIBUTES_BY_NAME.setdefault(entry[1], entry)


_register_unknown_attributes()


class Dropped(enum.Enum):
    """Why a message got no reply; the shell counts these."""

    MALFORMED = "malformed"  # not a well-formed STUN message (RFC 5389 §7.3)
    FINGERPRINT = "fingerprint"  # FINGERPRINT wrong or not the last attribute (§7.3, §15.5)
    NOT_REQUEST = "not_request"  # an indication or a response: nothing to answer (§7.3.2, §7.3.3)


@dataclass(frozen=True, slots=True)
class Reply:
    """``data`` to send to ``dest`` from our address ``origin``; ``status`` 200 or the error code."""

    data: bytes
    origin: Addr
    dest: Addr
    status: int


@dataclass(frozen=True, slots=True)
class Layout:
    """The server's addresses: one, or two IPs by two ports for RFC 5780 (§6.1's A1/A2, P1/P2)."""

    host: str
    port: int
    alt_host: str = ""
    alt_port: int = 0

    @property
    def discovery(self) -> bool:
        return bool(self.alt_host)

    def addresses(self) -> list[Addr]:
        """Every address to listen on: one, or four with behaviour discovery."""
        if not self.discovery:
            return [(self.host, self.port)]
        return [(h, p) for h in (self.host, self.alt_host) for p in (self.port, self.alt_port)]

    def origin(self, local: Addr, change_ip: bool, change_port: bool) -> Addr:
        """Where a reply to a request received on ``local`` leaves from (RFC 5780 §6.1, table 1)."""
        other_host, other_port = self.other(local)
        return (other_host if change_ip else local[0], other_port if change_port else local[1])

    def other(self, local: Addr) -> Addr:
        """OTHER-ADDRESS for ``local``: the other IP and the other port (Ca:Cp)."""
        host = self.alt_host if local[0] == self.host else self.host
        port = self.alt_port if local[1] == self.port else self.port
        return (host, port)


@dataclass(frozen=True, slots=True)
class Request:
    """What the checks learned of a message before aioice decodes it."""

    message_type: int
    classic: bool  # an RFC 3489 client: no magic cookie (RFC 5389 §12.2)
    types: list[int]


def frame_length(buffer: bytes | bytearray) -> int | None:
    """Size of the STUN message at the start of a stream ``buffer`` (RFC 5389 §7.2.2).

    None until its length field has arrived; ValueError if it cannot be STUN,
    as the stream then cannot be resynchronised."""
    if len(buffer) < 4:
        return None
    if buffer[0] & 0xC0:
        raise ValueError("the first two bits of a STUN message are zero")
    length = (buffer[2] << 8) | buffer[3]
    if length % 4:
        raise ValueError("a STUN message length is a multiple of 4")
    return HEADER_LENGTH + length


def check(data: bytes) -> Request | Dropped:
    """The receiver's checks of RFC 5389 §7.3, before any attribute is decoded."""
    size = len(data)
    if size < HEADER_LENGTH or data[0] & 0xC0 or size % 4:
        return Dropped.MALFORMED
    if HEADER_LENGTH + ((data[2] << 8) | data[3]) != size:
        return Dropped.MALFORMED
    types = _attribute_types(data)
    if types is None:
        return Dropped.MALFORMED
    classic = data[4:8] != COOKIE
    if TYPE_FINGERPRINT in types and not _fingerprint_ok(data, types):
        return Dropped.FINGERPRINT
    return Request((data[0] << 8) | data[1], classic, types)


def _attribute_types(data: bytes) -> list[int] | None:
    """The attribute types in order; None if one overruns the message."""
    types = []
    pos, size = HEADER_LENGTH, len(data)
    while pos < size:  # both multiples of 4: a whole attribute header is there
        kind, length = _ATTRIBUTE_HEADER.unpack_from(data, pos)
        pos += 4 + length + (-length % 4)  # values are padded to 4 bytes (§15)
        if pos > size:
            return None
        types.append(kind)
    return types


def _fingerprint_ok(data: bytes, types: list[int]) -> bool:
    # FINGERPRINT is 4 bytes and the last attribute (RFC 5389 §15.5).
    if types[-1] != TYPE_FINGERPRINT or data[-6:-4] != b"\x00\x04":
        return False
    return int.from_bytes(data[-4:], "big") == stun.message_fingerprint(data[:-8])


class StunResponder:
    """Answers Binding requests for a server at ``layout``."""

    def __init__(self, layout: Layout) -> None:
        self.layout = layout
        self.understood = UNDERSTOOD | {TYPE_CHANGE_REQUEST} if layout.discovery else UNDERSTOOD
        self._tails: dict[tuple[Addr, Addr], bytes] = {}

    def handle(
        self, data: bytes, source: Addr, local: Addr, stream: bool = False
    ) -> Reply | Dropped:
        """The reply to ``data``, received from ``source`` on our ``local`` address.

        ``stream``: it came over TCP, where a reply can only go back on the
        same connection."""
        request = check(data)
        if isinstance(request, Dropped):
            return request
        if request.message_type & CLASS_MASK != stun.Class.REQUEST:
            return Dropped.NOT_REQUEST
        method = request.message_type & METHOD_MASK
        if method != stun.Method.BINDING:
            # An unknown method or one this server does not offer (Allocate...): RFC 5389 §15.6.
            return self._error(data, request, source, local, 400, BAD_REQUEST)
        unknown = [
            t for t in request.types if t < COMPREHENSION_OPTIONAL and t not in self.understood
        ]
        if unknown:
            return self._error(data, request, source, local, 420, UNKNOWN_ATTRIBUTE, unknown)
        try:
            message = stun.parse_message(data)
        except (ValueError, struct.error, UnicodeDecodeError):
            return Dropped.MALFORMED
        flags = message.attributes.get("CHANGE-REQUEST", 0)
        if stream and flags & (CHANGE_IP | CHANGE_PORT):
            return self._error(data, request, source, local, 400, BAD_REQUEST)
        origin = self.layout.origin(local, bool(flags & CHANGE_IP), bool(flags & CHANGE_PORT))
        return self._success(data, request, source, local, origin)

    def _success(
        self, data: bytes, request: Request, source: Addr, local: Addr, origin: Addr
    ) -> Reply:
        response = stun.Message(stun.Method.BINDING, stun.Class.RESPONSE, data[8:20])
        attributes = response.attributes
        if request.classic:
            # RFC 5389 §12.2: MAPPED-ADDRESS only, and no attribute an RFC 3489 client
            # cannot skip; SOURCE-ADDRESS and CHANGED-ADDRESS are the RFC 3489 (§11.2)
            # names of RESPONSE-ORIGIN and OTHER-ADDRESS, which its NAT tests read.
            attributes["MAPPED-ADDRESS"] = source
            if self.layout.discovery:
                attributes["SOURCE-ADDRESS"] = origin
                attributes["CHANGED-ADDRESS"] = self.layout.other(local)
            return Reply(_classic(bytes(response), data), origin, source, 200)
        attributes["XOR-MAPPED-ADDRESS"] = source
        message = bytes(response)
        if self.layout.discovery:
            tail = self._tails.get((local, origin))
            if tail is None:
                tail = self._tails[(local, origin)] = self._tail(local, origin)
            message = _lengthened(message + tail)
        return Reply(_finished(message, request), origin, source, 200)

    def _tail(self, local: Addr, origin: Addr) -> bytes:
        """The discovery attributes after the mapped address, the same for every reply
        from ``origin`` to a request received on ``local``: encoded once by aioice, then
        reused."""
        response = stun.Message(stun.Method.BINDING, stun.Class.RESPONSE, bytes(12))
        response.attributes["RESPONSE-ORIGIN"] = origin
        response.attributes["OTHER-ADDRESS"] = self.layout.other(local)
        return bytes(response)[HEADER_LENGTH:]

    def _error(
        self,
        data: bytes,
        request: Request,
        source: Addr,
        local: Addr,
        code: int,
        reason: str,
        unknown: list[int] | None = None,
    ) -> Reply:
        # aioice's Method enum has no member for an unknown method: the int goes in as it is.
        method = request.message_type & METHOD_MASK
        response = stun.Message(method, stun.Class.ERROR, data[8:20])  # type: ignore[arg-type]
        response.attributes["ERROR-CODE"] = (code, reason)
        if unknown:
            if request.classic and len(unknown) % 2:
                unknown = [*unknown, unknown[-1]]  # RFC 3489 §11.2.10 pads by repeating one
            response.attributes["UNKNOWN-ATTRIBUTES"] = unknown
        if request.classic:
            return Reply(_classic(bytes(response), data), local, source, code)
        return Reply(_finished(bytes(response), request), local, source, code)


def _finished(message: bytes, request: Request) -> bytes:
    """``message`` with FINGERPRINT when the request had one: who checks it sends it."""
    return _fingerprinted(message) if TYPE_FINGERPRINT in request.types else message


def _lengthened(message: bytes) -> bytes:
    """``message`` with its length field set to the attributes it now holds."""
    length = len(message) - HEADER_LENGTH
    return message[:2] + length.to_bytes(2, "big") + message[4:]


def _fingerprinted(message: bytes) -> bytes:
    """``message`` with FINGERPRINT appended (RFC 5389 §15.5); aioice's own
    ``add_fingerprint`` would encode the whole message twice."""
    crc = stun.message_fingerprint(message)  # over the header with the final length
    length = len(message) - HEADER_LENGTH + 8
    return b"".join(
        (message[:2], length.to_bytes(2, "big"), message[4:], _FINGERPRINT, crc.to_bytes(4, "big"))
    )


def _classic(response: bytes, request: bytes) -> bytes:
    """An RFC 3489 reply: the request's 16-byte transaction ID (the cookie's place included)."""
    return response[:4] + request[4:8] + response[8:]
