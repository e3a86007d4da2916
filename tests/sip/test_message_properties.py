"""Properties of the message layer, checked with generated input.

- any message built from the grammar goes out and comes back equal;
- any bytes at all, and any mangling of a valid message, give a message or
  a ParseError, never another exception;
- on a message that parsed, every typed accessor gives a value or a
  ParseError.
"""

from __future__ import annotations

import string

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from sipline.sip.errors import ParseError
from sipline.sip.headers import header_key
from sipline.sip.message import Headers, Request, Response, find_message_end, parse_message

TOKEN_CHARS = string.ascii_letters + string.digits + "-.!%*_+`'~"
tokens = st.text(TOKEN_CHARS, min_size=1, max_size=12)
labels = st.text(string.ascii_lowercase + string.digits, min_size=1, max_size=8)
hosts = st.one_of(
    st.lists(labels, min_size=1, max_size=3).map(".".join),
    st.tuples(*[st.integers(0, 255)] * 4).map(lambda t: ".".join(map(str, t))),
    st.just("[2001:db8::1]"),
)
ports = st.none() | st.integers(1, 65535)
users = st.text(string.ascii_letters + string.digits + "-_.!~*'()&=+$,;?/", min_size=1, max_size=10)


def host_port(host: str, port: int | None) -> str:
    return host if port is None else f"{host}:{port}"


sip_uris = st.builds(
    lambda user, host, port: f"sip:{user}@{host_port(host, port)}",
    users,
    hosts,
    ports,
)
param_values = st.text(TOKEN_CHARS, min_size=1, max_size=10)
params = st.dictionaries(tokens.map(str.lower), st.none() | param_values, max_size=3).map(
    lambda d: "".join(f";{k}" if v is None else f";{k}={v}" for k, v in d.items())
)
vias = st.builds(
    lambda transport, host, port, branch, more: (
        f"SIP/2.0/{transport} {host_port(host, port)};branch=z9hG4bK{branch}{more}"
    ),
    st.sampled_from(["UDP", "TCP", "TLS", "SCTP", "WS"]),
    hosts,
    ports,
    tokens,
    params,
)
# Printable UTF-8 text without control characters, as a header value may be
# (LWS around a value is not part of it, so none is generated there).
TEXT = st.characters(blacklist_categories=("Cc", "Cs"))
display_names = st.text(TEXT, max_size=15).map(
    lambda text: '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
)
name_addrs = st.builds(
    lambda display, uri, tag: f"{display + ' ' if display else ''}<{uri}>{tag}",
    st.none() | display_names,
    sip_uris,
    st.none().map(lambda _: "") | tokens.map(lambda t: f";tag={t}"),
)
values = st.text(TEXT, max_size=40).filter(lambda v: v == v.strip())
header_names = tokens.filter(lambda name: header_key(name) != "content-length")
# Names the message layer gives no meaning to (so random values are fine in them).
TYPED = {"via", "to", "from", "call-id", "cseq", "max-forwards", "content-length", "contact",
         "route", "record-route", "path", "expires", "content-type", "authorization",
         "proxy-authorization"}
plain_header_names = tokens.filter(lambda name: header_key(name) not in TYPED)
bodies = st.binary(max_size=200)


@st.composite
def requests(draw: st.DrawFn, names: st.SearchStrategy[str] = header_names) -> Request:
    method = draw(st.sampled_from(["INVITE", "ACK", "BYE", "REGISTER", "OPTIONS"]) | tokens)
    items = [("Via", v) for v in draw(st.lists(vias, min_size=1, max_size=3))]
    items += [
        ("Max-Forwards", str(draw(st.integers(0, 255)))),
        ("To", draw(name_addrs)),
        ("From", draw(name_addrs)),
        ("Call-ID", draw(tokens)),
        ("CSeq", f"{draw(st.integers(0, 2**31 - 1))} {method}"),
    ]
    items += draw(st.lists(st.tuples(names, values), max_size=8))
    uri = draw(sip_uris | st.just("tel:+1-201-555-0123") | st.just("urn:service:sos"))
    return Request(method, uri, Headers(items), draw(bodies))


@st.composite
def responses(draw: st.DrawFn) -> Response:
    items = [("Via", v) for v in draw(st.lists(vias, min_size=1, max_size=3))]
    items += [
        ("To", draw(name_addrs)),
        ("From", draw(name_addrs)),
        ("Call-ID", draw(tokens)),
        ("CSeq", f"{draw(st.integers(0, 2**31 - 1))} {draw(tokens)}"),
    ]
    items += draw(st.lists(st.tuples(header_names, values), max_size=8))
    reason = draw(st.text(TEXT, max_size=20))
    return Response(draw(st.integers(100, 699)), reason, Headers(items), draw(bodies))


# --- round trip -------------------------------------------------------------------


@given(requests())
def test_any_request_goes_out_and_comes_back_equal(request: Request):
    assert parse_message(request.serialise()) == request
    assert parse_message(request.serialise(), stream=True) == request


@given(responses())
def test_any_response_goes_out_and_comes_back_equal(response: Response):
    assert parse_message(response.serialise()) == response


@given(requests())
def test_a_parsed_message_serialises_to_the_same_bytes(request: Request):
    wire = request.serialise()
    assert parse_message(wire).serialise() == wire


@given(requests(), st.binary(max_size=50))
def test_a_stream_framer_finds_the_end_of_any_message(request: Request, after: bytes):
    wire = request.serialise()
    assert find_message_end(wire + after) == len(wire)


@given(requests(plain_header_names))
def test_typed_views_of_generated_requests_read_back_what_was_written(request: Request):
    parsed = parse_message(request.serialise())
    assert [str(v) for v in parsed.vias] == [str(v) for v in request.vias]
    assert parsed.from_ == request.from_
    assert parsed.cseq == request.cseq
    assert parsed.via.branch is not None and parsed.via.branch.startswith("z9hG4bK")


# --- nothing but ParseError -------------------------------------------------------------


def read_everything(message: Request | Response) -> None:
    """Read every typed view; each may raise ParseError, nothing else."""
    readers = [
        lambda: message.via.branch,
        lambda: [(v.rport, v.received, v.maddr, v.reliable) for v in message.vias],
        lambda: (message.from_.tag, message.from_.uri),
        lambda: (message.to.tag, message.to.uri),
        lambda: message.call_id,
        lambda: message.cseq,
        lambda: [r.uri for r in message.routes],
        lambda: message.route,
        lambda: message.record_routes,
        lambda: message.paths,
        lambda: [(c.expires, c.q, c.instance, c.reg_id) for c in message.contacts],
        lambda: message.max_forwards,
        lambda: message.expires,
        lambda: message.content_length,
        lambda: message.content_type,
        lambda: message.authorizations,
        lambda: message.proxy_authorizations,
        lambda: (message.www_authenticate, message.proxy_authenticate),
        lambda: parse_message(message.serialise()),
    ]
    if isinstance(message, Request):
        readers.append(lambda: message.request_uri)
        readers.append(lambda: message.response(200, to_tag="t").serialise())
    for reader in readers:
        try:
            reader()
        except ParseError:
            pass


def parse_or_refuse(data: bytes, stream: bool = False) -> Request | Response | None:
    try:
        message = parse_message(data, stream=stream)
    except ParseError as exc:
        assert exc.reason and "\r" not in exc.reason and "\n" not in exc.reason
        return None
    assert isinstance(message, (Request, Response))
    return message


@given(st.binary(max_size=400), st.booleans())
@example(b"\r\n\r\n", False)
@example(b"SIP/2.0 200 OK\r\n\r\n", False)
@example(b"INVITE sip:a@b SIP/2.0\r\n\r\n", True)
def test_arbitrary_bytes_give_a_message_or_a_parse_error(data: bytes, stream: bool):
    message = parse_or_refuse(data, stream)
    if message is not None:
        read_everything(message)
    try:
        find_message_end(data)
    except ParseError:
        pass


VALID_INVITE = (
    b"INVITE sip:bob@biloxi.example;user=phone SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP pc33.atlanta.example:5060;branch=z9hG4bK776asdhds;rport\r\n"
    b"Via: SIP/2.0/TCP [2001:db8::1]:5070;branch=z9hG4bK22;received=192.0.2.1\r\n"
    b"Max-Forwards: 70\r\n"
    b"Route: <sip:p1.example;lr>, <sip:p2.example;lr>\r\n"
    b'To: "Bob, B." <sip:bob@biloxi.example>\r\n'
    b'From: "Alice \\"A\\"" <sip:alice@atlanta.example>;tag=1928301774\r\n'
    b"Call-ID: a84b4c76e66710@pc33.atlanta.example\r\n"
    b"CSeq: 314159 INVITE\r\n"
    b'Contact: <sip:alice@192.0.2.4>;expires=60;q=0.5;+sip.instance="<urn:uuid:1>";reg-id=1\r\n'
    b'Authorization: Digest username="alice", realm="atlanta.example", nonce="n",'
    b' uri="sip:bob@biloxi.example", response="0123456789abcdef0123456789abcdef"\r\n'
    b"Expires: 3600\r\n"
    b"Content-Type: application/sdp\r\n"
    b"Content-Length: 4\r\n"
    b"\r\n"
    b"v=0\n"
)
INTERESTING = [b":", b",", b";", b"<", b">", b'"', b"\\", b" ", b"\t", b"\r\n", b"\r\n ", b"=", b"/", b"@",
               b"[", b"]", b"0", b"9", b"-", b"\x00", b"\xff", b"\xc3\xa9", b"\r\n\r\n", b"%", b"*"]


@st.composite
def mangled(draw: st.DrawFn) -> bytes:
    data = bytearray(VALID_INVITE)
    for _ in range(draw(st.integers(1, 6))):
        at = draw(st.integers(0, len(data)))
        action = draw(st.sampled_from(["insert", "delete", "replace", "truncate"]))
        piece = draw(st.sampled_from(INTERESTING) | st.binary(min_size=1, max_size=3))
        if action == "insert":
            data[at:at] = piece
        elif action == "delete":
            del data[at : at + draw(st.integers(1, 8))]
        elif action == "replace":
            data[at : at + len(piece)] = piece
        else:
            del data[at:]
    return bytes(data)


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
@given(mangled(), st.booleans())
def test_mangled_messages_give_a_message_or_a_parse_error(data: bytes, stream: bool):
    message = parse_or_refuse(data, stream)
    if message is not None:
        read_everything(message)


def test_the_valid_message_the_mangling_starts_from_is_valid():
    message = parse_message(VALID_INVITE)
    read_everything(message)
    assert message.authorization is not None
    assert message.contacts[0].reg_id == 1


@given(requests(), st.data())
def test_changing_a_generated_message_keeps_it_parseable(request: Request, data: st.DataObject):
    headers = request.headers
    headers.prepend("Via", data.draw(vias))
    headers.set("Max-Forwards", str(data.draw(st.integers(0, 70))))
    headers.prepend("Record-Route", data.draw(name_addrs))
    headers.pop_first_value("Via")
    name, value = data.draw(st.tuples(header_names, values))
    headers.add(name, value)
    assert parse_message(request.serialise()) == request
