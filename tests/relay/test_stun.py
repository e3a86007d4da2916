"""The STUN server's core (relay.stun): what it answers to each message, without sockets.

RFC 5769's test vectors check the codec; the rest reads as the server's
specification: RFC 5389 §7.3 for what is answered, dropped or refused,
RFC 5389 §12.2 for RFC 3489 clients, RFC 5780 §6.1 for behaviour discovery.
"""

from __future__ import annotations

import struct

import pytest
from aioice import stun
from hypothesis import given, settings
from hypothesis import strategies as st

from relay.stun import Dropped, Layout, Reply, StunResponder, check, frame_length

LOCAL = ("127.0.0.1", 3478)
SOURCE = ("192.0.2.1", 32853)
TID = bytes.fromhex("b7e7a701bc34d686fa87dfae")
COOKIE = bytes.fromhex("2112a442")
HEADER = 20

# RFC 5769 §2: the short-term password of the vectors, then §2.1 to §2.3 byte for byte.
PASSWORD = b"VOkJxbRl1RmTxUk/WvJxBt"
SAMPLE_REQUEST = bytes.fromhex(
    "000100582112a442b7e7a701bc34d686fa87dfae"
    "80220010" "5354554e207465737420636c69656e74"  # SOFTWARE "STUN test client"
    "00240004" "6e0001ff"  # PRIORITY
    "80290008" "932ff9b151263b36"  # ICE-CONTROLLED
    "00060009" "6576746a3a68367659202020"  # USERNAME "evtj:h6vY" and padding
    "00080014" "9aeaa70cbfd8cb56781ef2b5b2d3f249c1b571a2"  # MESSAGE-INTEGRITY
    "80280004" "e57a3bcf"  # FINGERPRINT
)  # fmt: skip
SAMPLE_IPV4_RESPONSE = bytes.fromhex(
    "0101003c2112a442b7e7a701bc34d686fa87dfae"
    "8022000b" "7465737420766563746f7220"  # SOFTWARE "test vector" and padding
    "00200008" "0001a147e112a643"  # XOR-MAPPED-ADDRESS 192.0.2.1:32853
    "00080014" "2b91f599fd9e90c38c7489f92af9ba53f06be7d7"  # MESSAGE-INTEGRITY
    "80280004" "c07d4c96"  # FINGERPRINT
)  # fmt: skip
SAMPLE_IPV6_RESPONSE = bytes.fromhex(
    "010100482112a442b7e7a701bc34d686fa87dfae"
    "8022000b" "7465737420766563746f7220"  # SOFTWARE "test vector" and padding
    "00200014" "0002a1470113a9faa5d3f179bc25f4b5bed2b9d9"  # XOR-MAPPED-ADDRESS
    "00080014" "a382954e4be67bf11784c97c8292c275bfe3ed41"  # MESSAGE-INTEGRITY
    "80280004" "c8fb0b4c"  # FINGERPRINT
)  # fmt: skip


def raw(
    message_type: int,
    attributes: list[tuple[int, bytes]] = (),  # type: ignore[assignment]
    *,
    cookie: bytes = COOKIE,
    tid: bytes = TID,
    fingerprint: bool = False,
) -> bytes:
    """A STUN message built by hand, attribute values padded with zeros."""
    body = b"".join(
        struct.pack("!HH", kind, len(value)) + value + bytes(-len(value) % 4)
        for kind, value in attributes
    )
    if fingerprint:
        body += b"\x80\x28\x00\x04\x00\x00\x00\x00"
    data = struct.pack("!HH", message_type, len(body)) + cookie + tid + body
    if fingerprint:
        data = data[:-4] + stun.message_fingerprint(data[:-8]).to_bytes(4, "big")
    return data


def binding(*attributes: tuple[int, bytes], fingerprint: bool = True) -> bytes:
    return raw(0x0001, list(attributes), fingerprint=fingerprint)


def answer(responder: StunResponder, data: bytes, **kwargs: object) -> Reply:
    kwargs = {"source": SOURCE, "local": LOCAL} | kwargs
    reply = responder.handle(data, **kwargs)  # type: ignore[arg-type]
    assert isinstance(reply, Reply), reply
    return reply


@pytest.fixture
def server() -> StunResponder:
    return StunResponder(Layout(*LOCAL))


@pytest.fixture
def discovery() -> StunResponder:
    """A server on 127.0.0.1 and 127.0.0.2, each on ports 3478 and 3479."""
    return StunResponder(Layout("127.0.0.1", 3478, "127.0.0.2", 3479))


# --- RFC 5769 test vectors ------------------------------------------------------


def test_rfc5769_sample_request_decodes_and_its_integrity_and_fingerprint_verify() -> None:
    assert check(SAMPLE_REQUEST) != Dropped.FINGERPRINT
    message = stun.parse_message(SAMPLE_REQUEST)  # raises if FINGERPRINT were wrong
    assert (message.message_method, message.message_class) == (
        stun.Method.BINDING,
        stun.Class.REQUEST,
    )
    assert message.transaction_id == TID
    assert message.attributes["SOFTWARE"] == "STUN test client"
    assert message.attributes["USERNAME"] == "evtj:h6vY"
    assert message.attributes["PRIORITY"] == 0x6E0001FF
    assert message.attributes["ICE-CONTROLLED"] == 0x932FF9B151263B36
    assert message.check_message_integrity(PASSWORD)
    assert not message.check_message_integrity(b"not the password")


@pytest.mark.parametrize(
    ("vector", "mapped"),
    [
        (SAMPLE_IPV4_RESPONSE, ("192.0.2.1", 32853)),
        (SAMPLE_IPV6_RESPONSE, ("2001:db8:1234:5678:11:2233:4455:6677", 32853)),
    ],
    ids=["ipv4", "ipv6"],
)
def test_rfc5769_sample_responses_decode_their_xor_mapped_address(
    vector: bytes, mapped: tuple[str, int]
) -> None:
    message = stun.parse_message(vector)
    assert message.message_class == stun.Class.RESPONSE
    assert message.attributes["XOR-MAPPED-ADDRESS"] == mapped
    assert message.attributes["SOFTWARE"] == "test vector"
    assert message.check_message_integrity(PASSWORD)
    # Our encoding of the same address gives the vector's bytes.
    response = stun.Message(stun.Method.BINDING, stun.Class.RESPONSE, TID)
    response.attributes["XOR-MAPPED-ADDRESS"] = mapped
    xor_mapped = bytes(response)[HEADER:]
    assert xor_mapped in vector


@pytest.mark.parametrize(
    "vector",
    [SAMPLE_REQUEST, SAMPLE_IPV4_RESPONSE, SAMPLE_IPV6_RESPONSE],
    ids=["request", "ipv4", "ipv6"],
)
@pytest.mark.parametrize("offset", [0x08, 0x18, 0x30, -1])
def test_a_vector_with_one_bit_flipped_fails_its_fingerprint(vector: bytes, offset: int) -> None:
    damaged = bytearray(vector)
    damaged[offset] ^= 0x01
    assert check(bytes(damaged)) is Dropped.FINGERPRINT


def test_the_rfc5769_sample_request_is_answered(server: StunResponder) -> None:
    reply = answer(server, SAMPLE_REQUEST)
    response = stun.parse_message(reply.data)
    assert reply.status == 200
    assert response.transaction_id == TID
    assert response.attributes["XOR-MAPPED-ADDRESS"] == SOURCE


# --- Binding requests (RFC 5389 §7.3.1) -----------------------------------------


def test_a_binding_request_gets_the_source_address_from_where_it_arrived(
    server: StunResponder,
) -> None:
    reply = answer(server, binding())
    assert (reply.status, reply.origin, reply.dest) == (200, LOCAL, SOURCE)
    response = stun.parse_message(reply.data)  # checks FINGERPRINT
    assert (response.message_method, response.message_class) == (
        stun.Method.BINDING,
        stun.Class.RESPONSE,
    )
    assert response.transaction_id == TID
    # What the client needs and nothing more: a spoofed source gets little for its bytes.
    assert list(response.attributes) == ["XOR-MAPPED-ADDRESS", "FINGERPRINT"]
    assert response.attributes["XOR-MAPPED-ADDRESS"] == SOURCE
    assert reply.data[4:8] == COOKIE


def test_an_ipv6_source_is_mapped_as_ipv6(server: StunResponder) -> None:
    source = ("2001:db8::7", 61000)
    reply = answer(server, binding(), source=source)
    assert stun.parse_message(reply.data).attributes["XOR-MAPPED-ADDRESS"] == source


def test_a_request_without_fingerprint_is_answered_without(server: StunResponder) -> None:
    reply = answer(server, binding(fingerprint=False))
    assert reply.status == 200
    assert list(stun.parse_message(reply.data).attributes) == ["XOR-MAPPED-ADDRESS"]


@pytest.mark.parametrize(
    ("source", "fingerprint", "size"),
    [
        (SOURCE, False, 32),
        (SOURCE, True, 40),
        (("2001:db8::7", 61000), False, 44),
    ],
    ids=["ipv4", "ipv4 with FINGERPRINT", "ipv6"],
)
def test_a_reply_is_no_larger_than_the_mapped_address_needs(
    server: StunResponder, source: tuple[str, int], fingerprint: bool, size: int
) -> None:
    request = binding(fingerprint=fingerprint)
    assert len(answer(server, request, source=source).data) == size
    assert size - len(request) <= 24  # the XOR-MAPPED-ADDRESS, at most


def test_with_discovery_a_reply_adds_only_its_two_addresses(discovery: StunResponder) -> None:
    request = binding(fingerprint=False)
    assert len(answer(discovery, request).data) == len(request) + 12 + 24


def test_an_error_reply_is_no_larger_than_its_code_needs(server: StunResponder) -> None:
    request = raw(0x0003)  # an Allocate: 20 bytes
    reply = answer(server, request)
    assert reply.status == 400 and len(reply.data) == 40


def test_unknown_comprehension_optional_attributes_are_ignored(server: StunResponder) -> None:
    assert answer(server, binding((0x8123, b"whatever"), (0xFFFF, b""))).status == 200


def test_credentials_are_understood_but_not_required(server: StunResponder) -> None:
    # This server does not authenticate: a request with short-term credentials is still answered.
    request = stun.Message(stun.Method.BINDING, stun.Class.REQUEST, TID, {"USERNAME": "a:b"})
    request.add_message_integrity(b"secret")
    assert answer(server, bytes(request)).status == 200


def test_unknown_comprehension_required_attributes_get_420_listing_them(
    server: StunResponder,
) -> None:
    request = binding((0x7F01, b"x"), (0x8123, b"optional"), (0x0002, bytes(8)))
    reply = answer(server, request)
    response = stun.parse_message(reply.data)
    assert (reply.status, reply.origin, reply.dest) == (420, LOCAL, SOURCE)
    assert (response.message_method, response.message_class) == (
        stun.Method.BINDING,
        stun.Class.ERROR,
    )
    assert response.transaction_id == TID
    assert response.attributes["ERROR-CODE"] == (420, "Unknown Attribute")
    assert response.attributes["UNKNOWN-ATTRIBUTES"] == [0x7F01, 0x0002]
    assert "SOFTWARE" not in response.attributes


@pytest.mark.parametrize(
    ("kind", "value"),
    [(0x0027, b"\x30\x39\x00\x00"), (0x0026, bytes(64))],
    ids=["RESPONSE-PORT", "PADDING"],
)
def test_rfc5780_attributes_this_server_lacks_get_420(
    discovery: StunResponder, kind: int, value: bytes
) -> None:
    reply = answer(discovery, binding((kind, value)))
    assert stun.parse_message(reply.data).attributes["UNKNOWN-ATTRIBUTES"] == [kind]


def test_change_request_without_a_second_address_gets_420(server: StunResponder) -> None:
    # RFC 5780 §6.1: a server that cannot change its address does not understand CHANGE-REQUEST.
    reply = answer(server, binding((0x0003, b"\x00\x00\x00\x06")))
    assert reply.status == 420
    assert stun.parse_message(reply.data).attributes["UNKNOWN-ATTRIBUTES"] == [0x0003]


@pytest.mark.parametrize(
    "message_type",
    [0x0003, 0x0004, 0x0ABC & 0x3EEF],
    ids=["Allocate", "Refresh", "unknown"],
)
def test_requests_of_other_methods_get_400(server: StunResponder, message_type: int) -> None:
    reply = answer(server, raw(message_type, fingerprint=True))
    assert (reply.status, reply.dest) == (400, SOURCE)
    assert int.from_bytes(reply.data[:2], "big") == message_type | 0x0110  # same method, error
    assert reply.data[8:20] == TID
    assert check(reply.data) != Dropped.FINGERPRINT
    code = reply.data.index(b"\x00\x09")  # ERROR-CODE
    assert reply.data[code + 6 : code + 8] == b"\x04\x00"  # class 4, number 00


@pytest.mark.parametrize(
    "message_type", [0x0011, 0x0101, 0x0111, 0x0016], ids=["indication", "success", "error", "send"]
)
def test_indications_and_responses_are_dropped(server: StunResponder, message_type: int) -> None:
    assert server.handle(raw(message_type), SOURCE, LOCAL) is Dropped.NOT_REQUEST


# --- what is dropped (RFC 5389 §7.3) ---------------------------------------------

MALFORMED = {
    "empty": b"",
    "short header": binding()[:19],
    "top bits set": b"\x40" + binding()[1:],
    "length beyond the data": binding(fingerprint=False)[:2] + b"\x00\x08" + binding()[4:20],
    "length short of the data": binding((0x8022, b"abcd"), fingerprint=False)[:2]
    + b"\x00\x00"
    + binding((0x8022, b"abcd"), fingerprint=False)[4:],
    "length not a multiple of 4": raw(0x0001)[:2] + b"\x00\x02" + raw(0x0001)[4:] + b"\x00\x00",
    "attribute overruns the message": raw(0x0001, [(0x8022, b"abcd")])[:-6] + b"\x00\x08abcd",
    "USERNAME not UTF-8": binding((0x0006, b"\xff\xfe")),
    "SOFTWARE not UTF-8": binding((0x8022, b"\xc3")),
    "ICE-CONTROLLED too short": binding((0x8029, b"\x00\x01")),
    "plain text": b"OPTIONS sip:relay SIP/2.0\r\n\r\n",
}


@pytest.mark.parametrize("data", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_messages_are_dropped(server: StunResponder, data: bytes) -> None:
    assert server.handle(data, SOURCE, LOCAL) is Dropped.MALFORMED


def test_a_wrong_change_request_is_malformed(discovery: StunResponder) -> None:
    assert discovery.handle(binding((0x0003, b"\x00\x06")), SOURCE, LOCAL) is Dropped.MALFORMED


def test_a_wrong_fingerprint_is_dropped(server: StunResponder) -> None:
    data = bytearray(binding())
    data[-1] ^= 0xFF
    assert server.handle(bytes(data), SOURCE, LOCAL) is Dropped.FINGERPRINT


def test_a_fingerprint_that_is_not_last_is_dropped(server: StunResponder) -> None:
    fingerprinted = binding()
    data = raw(0x0001, [(0x8028, fingerprinted[-4:]), (0x8022, b"late")])
    assert server.handle(data, SOURCE, LOCAL) is Dropped.FINGERPRINT


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=120))
def test_any_bytes_get_a_reply_or_a_reason_never_an_exception(data: bytes) -> None:
    server = StunResponder(Layout("127.0.0.1", 3478, "127.0.0.2", 3479))
    assert isinstance(server.handle(data, SOURCE, LOCAL), Reply | Dropped)


@settings(max_examples=300, deadline=None)
@given(position=st.integers(0, 107), byte=st.integers(0, 255), cut=st.integers(0, 108))
def test_damaged_requests_never_raise(position: int, byte: int, cut: int) -> None:
    server = StunResponder(Layout("127.0.0.1", 3478, "127.0.0.2", 3479))
    damaged = bytearray(SAMPLE_REQUEST)
    damaged[position] = byte
    assert isinstance(server.handle(bytes(damaged), SOURCE, LOCAL), Reply | Dropped)
    assert isinstance(server.handle(bytes(damaged[:cut]), SOURCE, LOCAL), Reply | Dropped)


# --- RFC 3489 clients (RFC 5389 §12.2) ---------------------------------------------

CLASSIC_TID = bytes.fromhex("0123456789abcdef0123456789abcdef")


def classic(*attributes: tuple[int, bytes]) -> bytes:
    return raw(0x0001, list(attributes), cookie=CLASSIC_TID[:4], tid=CLASSIC_TID[4:])


def test_an_rfc3489_client_gets_mapped_address_and_its_own_transaction_id(
    server: StunResponder,
) -> None:
    reply = answer(server, classic())
    assert reply.data[4:20] == CLASSIC_TID
    assert stun.parse_message(reply.data).attributes == {"MAPPED-ADDRESS": SOURCE}


def test_an_rfc3489_client_of_a_discovery_server_also_gets_source_and_changed_address(
    discovery: StunResponder,
) -> None:
    reply = answer(discovery, classic((0x0003, b"\x00\x00\x00\x04")))
    assert reply.origin == ("127.0.0.2", 3478)
    assert stun.parse_message(reply.data).attributes == {
        "MAPPED-ADDRESS": SOURCE,
        "SOURCE-ADDRESS": ("127.0.0.2", 3478),
        "CHANGED-ADDRESS": ("127.0.0.2", 3479),
    }


def test_an_rfc3489_response_address_gets_420_padded_the_rfc3489_way(
    server: StunResponder,
) -> None:
    reply = answer(server, classic((0x0002, b"\x00\x01\x30\x39\xc0\x00\x02\x01")))
    assert reply.status == 420
    assert reply.data[4:20] == CLASSIC_TID
    assert stun.parse_message(reply.data).attributes["UNKNOWN-ATTRIBUTES"] == [0x0002, 0x0002]


# --- RFC 5780 behaviour discovery ---------------------------------------------------

A1, A2, P1, P2 = "127.0.0.1", "127.0.0.2", 3478, 3479


def change(flags: int) -> tuple[int, bytes]:
    return (0x0003, flags.to_bytes(4, "big"))


@pytest.mark.parametrize(
    ("local", "flags", "origin", "other"),
    [
        # RFC 5780 §6.1, table 1: the reply leaves from Da or Ca, Dp or Cp; OTHER-ADDRESS is Ca:Cp.
        ((A1, P1), 0x0, (A1, P1), (A2, P2)),
        ((A1, P1), 0x4, (A2, P1), (A2, P2)),
        ((A1, P1), 0x2, (A1, P2), (A2, P2)),
        ((A1, P1), 0x6, (A2, P2), (A2, P2)),
        ((A2, P2), 0x0, (A2, P2), (A1, P1)),
        ((A2, P2), 0x6, (A1, P1), (A1, P1)),
        ((A1, P2), 0x4, (A2, P2), (A2, P1)),
        ((A2, P1), 0x2, (A2, P2), (A1, P2)),
    ],
)
def test_change_request_picks_the_address_the_reply_leaves_from(
    discovery: StunResponder,
    local: tuple[str, int],
    flags: int,
    origin: tuple[str, int],
    other: tuple[str, int],
) -> None:
    reply = answer(discovery, binding(change(flags)), local=local)
    response = stun.parse_message(reply.data)
    assert (reply.status, reply.origin, reply.dest) == (200, origin, SOURCE)
    assert response.attributes["RESPONSE-ORIGIN"] == origin
    assert response.attributes["OTHER-ADDRESS"] == other
    assert response.attributes["XOR-MAPPED-ADDRESS"] == SOURCE


def test_a_request_without_change_request_gets_the_discovery_attributes(
    discovery: StunResponder,
) -> None:
    response = stun.parse_message(answer(discovery, binding()).data)
    assert list(response.attributes) == [
        "XOR-MAPPED-ADDRESS",
        "RESPONSE-ORIGIN",
        "OTHER-ADDRESS",
        "FINGERPRINT",
    ]


def test_over_tcp_the_reply_cannot_change_address(discovery: StunResponder) -> None:
    reply = answer(discovery, binding(change(0x6)), stream=True)
    assert (reply.status, reply.origin) == (400, LOCAL)
    assert answer(discovery, binding(change(0x0)), stream=True).status == 200


def test_a_discovery_layout_listens_on_two_addresses_by_two_ports() -> None:
    layout = Layout(A1, P1, A2, P2)
    assert layout.addresses() == [(A1, P1), (A1, P2), (A2, P1), (A2, P2)]
    assert Layout(A1, P1).addresses() == [(A1, P1)]


# --- stream framing (RFC 5389 §7.2.2) -------------------------------------------------


def test_a_stream_is_framed_by_the_stun_length_field() -> None:
    message = binding((0x8022, b"sw"))
    assert frame_length(message[:3]) is None
    assert frame_length(message[:4]) == len(message)
    assert frame_length(message + b"next") == len(message)


@pytest.mark.parametrize("head", [b"\x80\x01\x00\x00", b"\x00\x01\x00\x06", b"GET "])
def test_a_stream_that_is_not_stun_cannot_be_framed(head: bytes) -> None:
    with pytest.raises(ValueError):
        frame_length(head)
